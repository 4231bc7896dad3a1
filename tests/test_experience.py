"""Relevant experience of one CV in plain Python equals the vectorized form to the last bit."""

from __future__ import annotations

import numpy as np

from cvmatch_ray.match.experience import RoleLists, relevant_months_of_one, role_evidence

SKILLS = ["Python", "SQL", "Docker", "Payroll", "Excel", "Go"]
OCCUPATIONS = ["", "software developer", "accountant", "data analyst"]


def test_one_cvs_relevant_months_are_the_role_lists_to_the_last_bit():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(3000):
        roles = int(rng.integers(0, 6))
        months = [int(m) for m in rng.integers(0, 400, size=roles)]
        titles = [str(rng.choice(["", "Engineer", "Clerk"])) for _ in range(roles)]
        occupations = [str(rng.choice(OCCUPATIONS)) for _ in range(roles)]
        skills = [rng.choice(SKILLS, size=int(rng.integers(0, 4))).tolist() for _ in range(roles)]  # repeats too
        wanted = rng.choice(SKILLS, size=int(rng.integers(0, 4))).tolist()
        occupation = None if rng.random() < 0.3 else str(rng.choice(OCCUPATIONS[1:]))
        total = int(rng.integers(0, 600))
        expected = RoleLists.of_one(months, titles, occupations, skills).relevant_months(
            wanted, occupation, np.array([total]))[0]
        got = relevant_months_of_one(wanted, occupation, months=months, titles=titles, occupations=occupations,
                                     skills=skills, total_months=total)
        assert got == float(expected), (months, titles, occupations, skills, wanted, occupation, total)
        checked += expected not in (0.0, float(total))  # cases where the arithmetic matters
    assert checked > 500


def test_role_evidence_counts_the_relevant_months():
    line = role_evidence(["Python"], "software developer", months=[24, 36], titles=["Engineer", "Clerk"],
                         occupations=["software developer", "accountant"], skills=[["Python"], []], total_months=60)
    assert line == "2.0 years in matching roles: Engineer (2.0 y, same occupation); 5.0 in all"
