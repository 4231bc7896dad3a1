"""The OpenAI-compatible backend: any ``/v1/chat/completions`` server (vLLM's, llama.cpp, Ollama)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from cvmatch_ray.config import LLMSettings
from cvmatch_ray.standardize.llm import Generation, LLMBackendError, LLMRequest, LLMStandardizer

if TYPE_CHECKING:
    from cvmatch_ray.config import Settings

logger = logging.getLogger(__name__)

_DEFAULTS = LLMSettings()


class OpenAIStandardizer(LLMStandardizer):
    """Standardizer calling an OpenAI-compatible ``/v1/chat/completions`` server.

    Works with ``vllm serve`` (and other servers that accept a JSON-schema
    ``response_format``). Requests of a batch run concurrently on a thread pool, so the
    server batches them; a synchronous client keeps it usable from async code (a Serve
    replica) through ``asyncio.to_thread``.

    Args:
        base_url: the server root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name.
        api_key: sent as a bearer token when set.
        schema_mode: ``"response_format"`` (OpenAI's ``json_schema``) or
            ``"structured_outputs"`` (vLLM's own request field).
        max_tokens: the most tokens generated for one profile.
        seed: sampling seed sent with every request.
        timeout_s: one request's timeout.
        concurrency: requests in flight at once.
        transport: an ``httpx`` transport (tests, proxies).
        **common: see :class:`LLMStandardizer` (retry_temperature, rules, taxonomy, today).
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        schema_mode: Literal["response_format", "structured_outputs"] = "response_format",
        max_tokens: int = _DEFAULTS.max_tokens,
        seed: int = 0,
        timeout_s: float = 300.0,
        concurrency: int = 16,
        transport: Any = None,
        **common: Any,
    ) -> None:
        super().__init__(model=model, max_tokens=max_tokens, seed=seed, **common)
        import httpx

        self.base_url = base_url.rstrip("/")
        self.schema_mode = schema_mode
        self.concurrency = max(1, concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport,
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OpenAIStandardizer:
        """A standardizer configured by ``settings.llm.openai_*``; keyword overrides win.

        Raises:
            LLMBackendError: no server URL or model is configured.
        """
        llm = settings.llm
        kwargs: dict[str, Any] = {
            "base_url": llm.openai_base_url,
            "model": llm.openai_model,
            "api_key": llm.openai_api_key,
            "max_tokens": llm.max_tokens,
            "seed": llm.seed,
            "retry_temperature": llm.retry_temperature,
        }
        kwargs.update(overrides)
        if not kwargs["base_url"] or not kwargs["model"]:
            raise LLMBackendError(
                "set CVMATCH_LLM__OPENAI_BASE_URL and CVMATCH_LLM__OPENAI_MODEL for the openai backend"
            )
        return cls(**kwargs)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _body(self, req: LLMRequest, schema: dict[str, Any], name: str) -> dict[str, Any]:
        temperature, seed = self._sampling(req.attempt)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": req.messages,
            "temperature": temperature,
            "seed": seed,
            "max_tokens": self.max_tokens,
        }
        if self.schema_mode == "structured_outputs":
            body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
        else:
            # strict=False: OpenAI's strict mode wants every field required, ours have defaults.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": False},
            }
        return body

    def _post(self, body: dict[str, Any]) -> Generation:
        import httpx

        try:
            resp = self._client.post("/chat/completions", json=body)
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as e:
            raise LLMBackendError(f"cannot reach the LLM server at {self.base_url}: {e}") from e
        except httpx.TimeoutException:
            return Generation("", None, error="request timed out")
        except httpx.HTTPError as e:
            return Generation("", None, error=f"HTTP transport error ({type(e).__name__})")
        if resp.status_code >= 400:
            # The body can echo the prompt; only its status goes into the reason.
            return Generation("", None, error=f"server answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return Generation("", None, error="malformed chat completion response")
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    def _generate(self, requests: list[LLMRequest], schema: dict[str, Any]) -> list[Generation]:
        name = "CVProfile" if requests and requests[0].kind == "cv" else "JDProfile"
        bodies = [self._body(r, schema, name) for r in requests]
        if len(bodies) == 1:
            return [self._post(bodies[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            return list(pool.map(self._post, bodies))
