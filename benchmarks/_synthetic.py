"""Synthetic stored CVs for scale benchmarks (real skills vocabulary, random vectors)."""

from __future__ import annotations

import numpy as np

from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.schemas import CVProfile, CVStats, EducationLevel, JDProfile, Provenance, SkillMention
from cvmatch_ray.storage.records import CVRecord, JDRecord
from cvmatch_ray.storage.tables import Store

SKILLS = [
    "Python", "Java", "JavaScript", "TypeScript", "SQL", "PostgreSQL", "Docker", "Kubernetes",
    "Amazon Web Services", "Apache Kafka", "React", "Django", "FastAPI", "Terraform", "Linux",
    "Microsoft Excel", "Accounting", "Payroll", "Salesforce", "Customer service", "Tableau",
    "Machine learning", "Go (programming language)", "Node.js", "Git", "REST API",
]


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, 3, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=2, keepdims=True)


def fill(store: Store, n: int, *, dim: int = 384, seed: int = 0, batch: int = 5000) -> tuple[str, list[str]]:
    """Store ``n`` synthetic CVs and one JD; returns (jd_id, cv_ids)."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    levels = list(EducationLevel)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        vecs = unit(rng, m, dim)
        records = []
        for j in range(m):
            skills = rng.choice(SKILLS, size=int(rng.integers(2, 12)), replace=False).tolist()
            profile = CVProfile(
                skills=[SkillMention(name=s) for s in skills],
                total_experience_months=int(rng.integers(0, 300)),
                education=[{"level": levels[int(rng.integers(0, len(levels)))].value}],
            )
            cv_id = f"{start + j:032x}"
            ids.append(cv_id)
            records.append(CVRecord(
                cv_id=cv_id, filename=f"cv{start + j}.pdf", text="synthetic CV " * 50, profile=profile,
                stats=CVStats.of(profile), provenance=Provenance(), flags=[], vectors=vecs[j],
                features=cv_feature_columns(profile, "synthetic CV " * 50),
            ))
        store.upsert_cvs(records)
    jd = JDProfile(
        title="Senior Python Backend Engineer",
        required_skills=["Python", "PostgreSQL", "Docker", "Kubernetes", "Amazon Web Services"],
        preferred_skills=["Apache Kafka", "Terraform"],
        min_years=5, education_level=EducationLevel.bachelor,
    )
    jd_id = "f" * 32
    store.upsert_jds([JDRecord(jd_id=jd_id, filename="jd.txt", text="jd", profile=jd, provenance=Provenance(), vectors=unit(rng, 1, dim)[0])])
    store.optimize()
    return jd_id, ids
