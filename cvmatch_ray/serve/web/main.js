// The recruiter's page: wires the API key, blind mode and the four sections together.

import { api, apiKey, describe, setApiKey } from "./api.js";
import { changed, state } from "./state.js";
import { setupMatch } from "./match.js";
import { deleteCv, openProfile, setupProfile } from "./profile.js";
import { bestJobs, setupReverse } from "./reverse.js";
import { setupUpload } from "./upload.js";

async function showServer() {
  const info = document.getElementById("server-info");
  try {
    const h = await api("/api/health");
    const auth = h.auth ? (apiKey() ? "API key set" : "needs an API key") : "no API key needed";
    info.textContent = `v${h.version} · ${h.standardizer} standardizer · ${auth}`;
    document.body.dataset.ready = "true";
  } catch (err) {
    info.textContent = describe(err);
  }
}

function setupSettings() {
  const key = document.getElementById("api-key");
  key.value = apiKey();
  key.addEventListener("change", () => {
    setApiKey(key.value.trim());
    showServer();
  });
  const blind = document.getElementById("blind");
  state.blind = blind.checked;
  blind.addEventListener("change", () => {
    state.blind = blind.checked;
    changed();
  });
}

setupSettings();
setupUpload();
setupMatch({ openProfile, bestJobs, deleteCv });
setupProfile();
setupReverse();
showServer();
