"""Write the example job descriptions, CVs and bad inputs under ``examples/``.

Usage: python scripts/make_examples.py [--out examples]

Every person, company and contact detail is fictional: e-mails are @example.com and phone
numbers come from Ofcom's drama range (+44 20 7946 0xxx). The CVs cover each input
format and the layouts extraction must handle:

- ``cvs/amelie_dubois_backend.pdf``: two columns, a dark sidebar with white text, and a
  content stream written row by row across both columns (so reading it in stream order
  interleaves them);
- ``cvs/jonas_muller_data.docx``: a DOCX with a skills table and an experience table;
- ``cvs/priya_raman_frontend.pdf``: a plain single-column PDF;
- ``cvs/jose_garcia_accountant.txt`` and ``cvs/chen_wei_devops.md``: text and Markdown.

``bad/`` holds one file per refusal: encrypted, scanned (no text layer), an image and an
empty file. Needs fpdf2, python-docx, pypdf and Pillow (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import io
import logging
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import docx
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.shared import Pt, RGBColor
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader, PdfWriter

logger = logging.getLogger("make_examples")

# Fixed dates keep the outputs byte-stable across runs (except the encrypted PDF, whose
# file id is random by design).
_FIXED = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)

# ----------------------------------------------------------------------------- texts

SENIOR_PYTHON_JD = """\
Senior Python Backend Engineer
Northwind Analytics - London, United Kingdom (hybrid, 3 days a week in the office)

About the role
Northwind Analytics builds the data platform behind pricing decisions for 200 retailers.
We are looking for a Senior Python Backend Engineer to design, build and run the APIs
and services at the heart of that platform.

Responsibilities
- Design, build and maintain REST APIs and backend services in Python
- Own services end to end: design reviews, testing, deployment, monitoring and on-call
- Model data and tune queries in PostgreSQL
- Package and deploy services with Docker and Kubernetes on AWS
- Review code and mentor mid-level engineers
- Work with product managers and data scientists to shape new features

Requirements
Must have:
- 5+ years of experience in backend software development
- Strong Python
- FastAPI or Django
- PostgreSQL
- Docker
- Kubernetes
- AWS
- Designing and building REST APIs
- Bachelor's degree in Computer Science or related field

Nice to have
- Kafka
- Terraform
- Ray

Location: London, United Kingdom (hybrid)
Salary: GBP 85,000 - 100,000
"""

STAFF_ACCOUNTANT_JD = """\
# Staff Accountant

**Harbourside Foods Ltd** - Bristol, United Kingdom (on site)

## About the job
Harbourside Foods is a growing food distributor. Our finance team is hiring a Staff
Accountant to own month-end close tasks and keep our books accurate.

## Responsibilities
- Prepare journal entries and support the month-end and year-end close
- Perform bank, credit card and balance sheet reconciliations
- Maintain the general ledger and fixed asset register
- Process accounts payable and accounts receivable in QuickBooks
- Prepare schedules for the external auditors
- Build reports and analyses in Excel

## Requirements
- 3+ years of accounting experience
- Bachelor's degree in Accounting or Finance
- Working knowledge of GAAP
- Advanced Excel (pivot tables, VLOOKUP/XLOOKUP)
- QuickBooks
- Account reconciliations

## Nice to have
- CPA (or progress towards it) is a plus
- Experience in a distribution or manufacturing business

Location: Bristol, United Kingdom
"""

JOSE_TXT = """\
José García
Staff Accountant
Bristol, United Kingdom | jose.garcia@example.com | +44 20 7946 0321

SUMMARY
Certified Public Accountant (CPA) with 6 years of experience in general ledger
accounting, month-end close and account reconciliations under US GAAP. Advanced Excel
user; QuickBooks power user.

SKILLS
GAAP, month-end close, account reconciliations, bank reconciliations, journal entries,
accounts payable, accounts receivable, fixed assets, QuickBooks, Excel (pivot tables,
XLOOKUP, Power Query), Sage 50, audit preparation

EXPERIENCE
Staff Accountant
Marlow & Pike Distribution Ltd, Bristol
Feb 2021 – Present
- Own the month-end close for three entities; close in 5 working days
- Perform 40+ monthly balance sheet and bank reconciliations
- Prepare journal entries, accruals and prepayments under GAAP
- Maintain the fixed asset register and depreciation schedules in Excel
- Prepare audit schedules and answer auditor queries

Accounts Assistant
Cabot Street Bakeries, Bristol
09/2019 to 01/2021
- Processed supplier invoices and payment runs in QuickBooks
- Reconciled bank and credit card accounts weekly
- Supported the year-end audit

Accounting Intern
Avon Valley Accountants, Bath
2018-2019
- Bookkeeping and VAT returns for small business clients

EDUCATION
BBA in Accounting, University of the West of England, 2019

CERTIFICATIONS
Certified Public Accountant (CPA), 2022

LANGUAGES
Spanish (native), English (fluent)
"""

CHEN_MD = """\
# Chen Wei

**DevOps Engineer** · Edinburgh, United Kingdom · chen.wei@example.com · +44 20 7946 0789

## Summary
DevOps engineer with 6 years of experience running production platforms on AWS.
I build Kubernetes clusters with Terraform, automate delivery pipelines and keep
services observable and cheap.

## Skills
- **Cloud & infrastructure:** AWS (EKS, EC2, RDS, IAM), Terraform, Ansible
- **Containers:** Kubernetes, Docker, Helm
- **Languages:** Go, Python (scripting), Bash
- **Operating systems:** Linux (Ubuntu, Debian, Amazon Linux)
- **CI/CD & observability:** GitHub Actions, Jenkins, Prometheus, Grafana

## Experience

### DevOps Engineer, Thistle Logistics, Edinburgh
*Jan 2022 – Present*
- Run 6 Kubernetes clusters (EKS) defined in Terraform for 120 services
- Wrote a Go operator that rotates database credentials
- Cut AWS spend by 28% with spot instances and right-sizing
- Built GitHub Actions pipelines with Docker image scanning

### Systems Engineer, Forth Hosting, Glasgow
*2019-2021*
- Administered 300 Linux servers with Ansible
- Moved legacy applications into Docker containers
- Wrote Python scripts for backups and capacity reports

## Education
BSc (Hons) Computer Science, Heriot-Watt University, 2019

## Certifications
- Certified Kubernetes Administrator (CKA), 2023
- AWS Certified Solutions Architect – Associate, 2022

## Languages
Mandarin (native), English (fluent)
"""

# ------------------------------------------------------------------------- PDF helpers

_A4_W, _A4_H = 595.28, 841.89


class _Layout:
    """Text placed at absolute positions, written to the page in the order asked for."""

    def __init__(self, pdf: FPDF) -> None:
        self.pdf = pdf
        self.items: list[tuple[float, float, str, str, float, tuple[int, int, int]]] = []

    def lines(
        self, x: float, y: float, width: float, text: str, *, style: str = "", size: float = 10,
        leading: float = 1.35, color: tuple[int, int, int] = (30, 30, 30),
    ) -> float:
        """Wrap ``text`` into ``width`` and queue its lines; return the y under the last."""
        self.pdf.set_font("helvetica", style=style, size=size)
        wrapped = self.pdf.multi_cell(width, size, text, dry_run=True, output="LINES")
        for line in wrapped:
            self.items.append((x, y + size, line, style, size, color))
            y += size * leading
        return y

    def write(self, *, row_major: bool) -> None:
        """Emit the queued text; ``row_major`` sorts it by line across columns."""
        items = sorted(self.items, key=lambda it: (round(it[1]), it[0])) if row_major else self.items
        for x, y, line, style, size, color in items:
            self.pdf.set_font("helvetica", style=style, size=size)
            self.pdf.set_text_color(*color)
            self.pdf.text(x, y, line)


def _new_pdf(title: str) -> FPDF:
    pdf = FPDF(unit="pt", format="A4")
    pdf.set_creation_date(_FIXED)
    pdf.set_title(title)
    pdf.set_author("cvmatch-ray examples")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    return pdf


def amelie_pdf() -> bytes:
    """Two-column CV: dark sidebar with white text, content written row by row."""
    pdf = _new_pdf("Amelie Dubois-Lefevre - CV")
    sidebar_w = 180.0
    # Header band across the page, then the sidebar background.
    pdf.set_fill_color(24, 39, 71)
    pdf.rect(0, 0, _A4_W, 96, style="F")
    pdf.set_fill_color(36, 56, 99)
    pdf.rect(0, 96, sidebar_w, _A4_H - 96, style="F")
    lay = _Layout(pdf)
    white = (255, 255, 255)
    lay.lines(36, 26, 520, "Amélie Dubois-Lefèvre", style="B", size=24, color=white)
    lay.lines(36, 62, 520, "Senior Python Backend Engineer", size=13, color=(200, 215, 240))

    # Sidebar (left).
    sx, sw, y = 24.0, sidebar_w - 44, 120.0
    for heading, body in (
        ("CONTACT", ["amelie.dubois@example.com", "+44 20 7946 0123", "London, United Kingdom",
                     "github.com/amelie-dl"]),
        ("SKILLS", ["Python", "FastAPI", "Django", "PostgreSQL", "Docker", "Kubernetes", "AWS (ECS, EKS, RDS)",
                    "Kafka", "REST APIs", "Redis", "Celery", "Git, CI/CD"]),
        ("LANGUAGES", ["French - native", "English - fluent", "German - intermediate"]),
        ("CERTIFICATIONS", ["AWS Certified Developer - Associate (2021)"]),
    ):
        y = lay.lines(sx, y, sw, heading, style="B", size=11, color=white) + 4
        for item in body:
            y = lay.lines(sx, y, sw, item, size=9.5, leading=1.4, color=white)
        y += 14

    # Main column (right).
    mx, mw, y = sidebar_w + 24, _A4_W - sidebar_w - 60, 120.0
    dark = (25, 25, 25)

    def heading(text: str, y: float) -> float:
        return lay.lines(mx, y, mw, text, style="B", size=12, color=(24, 39, 71)) + 4

    y = heading("SUMMARY", y)
    y = lay.lines(
        mx, y, mw,
        "Backend engineer with 8+ years of experience building Python services and REST APIs. "
        "I design APIs with FastAPI and Django, model data in PostgreSQL, and run services in "
        "Docker on Kubernetes in AWS. I enjoy event-driven systems with Kafka and mentoring engineers.",
        size=10, color=dark,
    ) + 12
    y = heading("EXPERIENCE", y)
    for title, company, dates, bullets in (
        ("Senior Backend Engineer", "Finch Payments, London", "Jan 2019 - Present", [
            "Lead a team of 5 building the payments API in Python (FastAPI) on PostgreSQL.",
            "Moved 40 services from EC2 to k8s (Amazon EKS); deploys went from weekly to daily.",
            "Designed Kafka event streams for ledger updates, 20k events per second.",
            "Introduced contract tests for REST APIs and cut production incidents by 35%.",
        ]),
        ("Backend Developer", "Ardoise Logiciels, Lyon", "03/2017 to 12/2018", [
            "Built REST APIs in Django and Django REST Framework for a logistics SaaS.",
            "Containerised the monolith with Docker and tuned PostgreSQL queries.",
        ]),
    ):
        y = lay.lines(mx, y, mw, f"{title} - {company}", style="B", size=10.5, color=dark)
        y = lay.lines(mx, y, mw, dates, style="I", size=9.5, color=(90, 90, 90)) + 2
        for b in bullets:
            y = lay.lines(mx, y, mw, f"- {b}", size=10, color=dark)
        y += 10
    y = heading("EDUCATION", y)
    y = lay.lines(mx, y, mw, "MSc Computer Science - Université Claude Bernard Lyon 1, 2016", size=10, color=dark)
    y = lay.lines(mx, y, mw, "BSc Computer Science - Université Claude Bernard Lyon 1, 2014", size=10, color=dark)
    lay.write(row_major=True)
    return bytes(pdf.output())


def priya_pdf() -> bytes:
    """Single-column CV."""
    pdf = _new_pdf("Priya Raman - CV")
    lay = _Layout(pdf)
    x, w, y = 56.0, _A4_W - 112, 50.0
    y = lay.lines(x, y, w, "Priya Raman", style="B", size=22)
    y = lay.lines(x, y, w, "Frontend Engineer", size=13, color=(70, 70, 70))
    y = lay.lines(x, y, w, "Leeds, United Kingdom | priya.raman@example.com | +44 20 7946 0654", size=9.5) + 14

    def section(title: str, y: float) -> float:
        return lay.lines(x, y, w, title, style="B", size=12, color=(150, 40, 60)) + 3

    y = section("Summary", y)
    y = lay.lines(
        x, y, w,
        "Frontend engineer with 5 years of experience building fast, accessible web applications "
        "with React and TypeScript. Comfortable across the stack with Node.js, and with a little "
        "Docker for local environments.",
    ) + 10
    y = section("Skills", y)
    y = lay.lines(
        x, y, w,
        "JavaScript (ES2022), TypeScript, React, Next.js, Redux, HTML5, CSS, Sass, Tailwind CSS, "
        "Node.js, Jest, Cypress, Storybook, Webpack, Vite, Git, Docker (basic)",
    ) + 10
    y = section("Experience", y)
    for title, dates, bullets in (
        ("Frontend Engineer - Larkspur Health, Leeds", "Jan 2022 - Present", [
            "Built the patient booking app in React and TypeScript used by 300k people a month.",
            "Created a shared component library with Storybook and CSS modules.",
            "Improved Largest Contentful Paint from 4.1 s to 1.8 s.",
        ]),
        ("Frontend Developer - Pennine Digital, Sheffield", "09/2020 to 12/2021", [
            "Developed client websites in JS, React and Sass; wrote small Node.js APIs.",
            "Set up Jest and Cypress test suites and Docker-based dev environments.",
        ]),
    ):
        y = lay.lines(x, y, w, title, style="B", size=10.5)
        y = lay.lines(x, y, w, dates, style="I", size=9.5, color=(90, 90, 90)) + 2
        for b in bullets:
            y = lay.lines(x + 10, y, w - 10, f"- {b}")
        y += 8
    y = section("Education", y)
    y = lay.lines(x, y, w, "BEng Software Engineering, University of Leeds, 2020") + 10
    y = section("Languages", y)
    lay.lines(x, y, w, "English (native), Tamil (fluent)")
    lay.write(row_major=False)
    return bytes(pdf.output())


# ------------------------------------------------------------------------ DOCX helpers


def jonas_docx() -> bytes:
    """DOCX with a skills table and an experience table."""
    d = docx.Document()
    d.core_properties.author = "cvmatch-ray examples"
    d.core_properties.created = _FIXED.replace(tzinfo=None)
    d.core_properties.modified = _FIXED.replace(tzinfo=None)
    d.core_properties.last_modified_by = "cvmatch-ray examples"
    title = d.add_paragraph()
    run = title.add_run("Jonas Müller")
    run.bold = True
    run.font.size = Pt(22)
    d.add_paragraph("Data Scientist")
    d.add_paragraph("Manchester, United Kingdom | jonas.mueller@example.com | +44 20 7946 0456")

    d.add_heading("Summary", level=2)
    d.add_paragraph(
        "Data scientist with 4 years of experience turning retail data into forecasts and "
        "dashboards. I work in Python (pandas, scikit-learn) and SQL, scale jobs with Spark "
        "and present results in Tableau."
    )
    d.add_heading("Skills", level=2)
    skills = d.add_table(rows=0, cols=2)
    skills.style = "Table Grid"
    for area, items in (
        ("Programming", "Python, SQL, R"),
        ("Libraries", "pandas, NumPy, scikit-learn, statsmodels"),
        ("Big data", "Spark (PySpark), Databricks"),
        ("Visualisation", "Tableau, matplotlib"),
        ("Methods", "forecasting, A/B testing, regression, classification"),
    ):
        cells = skills.add_row().cells
        cells[0].text, cells[1].text = area, items

    d.add_heading("Experience", level=2)
    exp = d.add_table(rows=1, cols=3)
    exp.style = "Table Grid"
    exp.alignment = WD_TABLE_ALIGNMENT.CENTER
    hdr = exp.rows[0].cells
    hdr[0].text, hdr[1].text, hdr[2].text = "Dates", "Role", "Highlights"
    for dates, role, highlights in (
        ("Mar 2022 – Present", "Data Scientist, Bramble Retail, Manchester",
         "Built demand forecasts in Python and Spark for 900 stores; Tableau dashboards for buyers."),
        ("07/2021 to 02/2022", "Junior Data Analyst, Irwell Insights, Salford",
         "SQL reporting and pandas pipelines; scikit-learn churn model."),
    ):
        cells = exp.add_row().cells
        cells[0].text, cells[1].text, cells[2].text = dates, role, highlights

    d.add_heading("Education", level=2)
    d.add_paragraph("BSc Statistics, University of Manchester, 2021")
    d.add_heading("Languages", level=2)
    p = d.add_paragraph("German (native), English (fluent)")
    p.runs[0].font.color.rgb = RGBColor(0x20, 0x20, 0x20)
    buf = io.BytesIO()
    d.save(buf)
    return _stable_zip(buf.getvalue())


def _stable_zip(data: bytes) -> bytes:
    """Rewrite a ZIP with fixed member timestamps, so reruns give the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


# --------------------------------------------------------------------------- bad files


def encrypted_pdf() -> bytes:
    pdf = _new_pdf("Encrypted")
    pdf.set_font("helvetica", size=12)
    pdf.text(72, 100, "This CV needs a password.")
    reader = PdfReader(io.BytesIO(bytes(pdf.output())))
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password="cvmatch", owner_password="cvmatch-owner", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def scanned_pdf() -> bytes:
    """A page of drawn shapes standing in for a scan: pages, but no text layer."""
    pdf = _new_pdf("Scanned")
    pdf.set_fill_color(235, 235, 235)
    pdf.rect(40, 40, _A4_W - 80, _A4_H - 80, style="F")
    pdf.set_fill_color(60, 60, 60)
    for i in range(30):
        pdf.rect(70, 80 + 22 * i, 200 + (i * 37) % 250, 8, style="F")
    pdf.image(Image.new("L", (40, 40), color=128), x=_A4_W - 140, y=60, w=80, h=80)
    return bytes(pdf.output())


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color=(200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------ main


def build(out: Path) -> list[Path]:
    """Write every example under ``out``; return the paths written."""
    files: dict[str, bytes] = {
        "jds/senior_python_backend.txt": SENIOR_PYTHON_JD.encode(),
        "jds/staff_accountant.md": STAFF_ACCOUNTANT_JD.encode(),
        "cvs/amelie_dubois_backend.pdf": amelie_pdf(),
        "cvs/jonas_muller_data.docx": jonas_docx(),
        "cvs/priya_raman_frontend.pdf": priya_pdf(),
        "cvs/jose_garcia_accountant.txt": JOSE_TXT.encode(),
        "cvs/chen_wei_devops.md": CHEN_MD.encode(),
        "bad/encrypted.pdf": encrypted_pdf(),
        "bad/scanned.pdf": scanned_pdf(),
        "bad/image.png": tiny_png(),
        "bad/empty.txt": b"",
    }
    written = []
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "examples")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in build(args.out):
        logger.info("wrote %s (%d bytes)", path, path.stat().st_size)


if __name__ == "__main__":
    main()
