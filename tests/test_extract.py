"""Extraction: every format, type detection, each refusal, spacing, columns, hidden text.

All documents are built here (fpdf2, python-docx, pypdf) or read from the committed
``examples/``; nothing needs the shared development data.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import numpy as np
import pypdfium2 as pdfium
import pytest
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Pt, RGBColor
from fpdf import FPDF
from hostile_docs import inflating_docx
from pypdf import PdfReader, PdfWriter

from cvmatch_ray.config import Settings
from cvmatch_ray.extract import (
    FLAG_HIDDEN_TEXT,
    FLAG_MULTI_COLUMN,
    FLAG_SPACING_RECOVERED,
    FLAG_TRUNCATED,
    ArchiveTooLarge,
    CorruptDocument,
    DocumentTooComplex,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    ExtractionError,
    NoTextLayer,
    TooManyPages,
    UnsupportedDocumentType,
    detect_kind,
    extract_document,
    looks_unspaced,
    normalize_text,
)
from cvmatch_ray.extract.pdf_layout import Glyphs, layout_page

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
A4_W, A4_H = 595.28, 841.89


# --------------------------------------------------------------------------- builders


def make_pdf(draw, pages: int = 1) -> bytes:
    """A PDF whose pages are drawn by ``draw(pdf, page_number)``."""
    pdf = FPDF(unit="pt", format="A4")
    pdf.set_auto_page_break(False)
    for i in range(pages):
        pdf.add_page()
        pdf.set_font("helvetica", size=10)
        pdf.set_text_color(0, 0, 0)
        draw(pdf, i)
    return bytes(pdf.output())


def simple_pdf(lines: list[str], pages: int = 1) -> bytes:
    def draw(pdf: FPDF, page: int) -> None:
        for k, line in enumerate(lines):
            pdf.text(72, 90 + 16 * k, line)

    return make_pdf(draw, pages)


def pdfium_text(data: bytes) -> str:
    """What pdfium alone returns, in content order."""
    doc = pdfium.PdfDocument(data)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


LEFT = ["CONTACT", "ada.lovelace@example.com", "+44 20 7946 0999", "SKILLS", "Python", "PostgreSQL",
        "Docker", "Kubernetes", "LANGUAGES", "English - native"]
RIGHT = ["SUMMARY", "Backend engineer building payment APIs.", "EXPERIENCE", "Senior Engineer - Finch Payments",
         "Jan 2019 - Present", "- Built the ledger service in Python.", "- Ran PostgreSQL on AWS.",
         "EDUCATION", "MSc Computer Science, 2016"]


def two_column_pdf() -> bytes:
    """A sidebar and a main column, written to the content stream row by row, name on top."""

    def draw(pdf: FPDF, page: int) -> None:
        pdf.set_font("helvetica", style="B", size=20)
        pdf.text(40, 50, "Ada Lovelace")
        items = [(40.0, 100 + 15.0 * k, t) for k, t in enumerate(LEFT)]
        items += [(230.0, 100 + 16.5 * k, t) for k, t in enumerate(RIGHT)]
        pdf.set_font("helvetica", size=10)
        for x, y, t in sorted(items, key=lambda it: (it[1], it[0])):  # interleaves the columns
            pdf.text(x, y, t)

    return make_pdf(draw)


def docx_bytes(build) -> bytes:
    d = docx.Document()
    build(d)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def shade(cell, fill: str) -> None:
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:fill"), fill)
    cell._tc.get_or_add_tcPr().append(shd)


def cv_docx(d: docx.document.Document) -> None:
    d.sections[0].header.paragraphs[0].text = "Jonas Example | jonas@example.com"
    d.add_paragraph("Data Scientist")
    d.add_heading("Skills", level=2)
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text, t.cell(0, 1).text = "Programming", "Python, SQL"
    t.cell(1, 0).text, t.cell(1, 1).text = "Big data", "Spark"
    d.add_heading("Experience", level=2)
    d.add_paragraph("Data Scientist at Bramble Retail", style="List Bullet")
    exp = d.add_table(rows=1, cols=2)
    exp.cell(0, 0).text, exp.cell(0, 1).text = "Mar 2022 – Present", "Forecasting with pandas"
    d.add_paragraph("Education: BSc Statistics")


# ------------------------------------------------------------------------ plain text


def test_utf8_text_keeps_lines_and_normalizes() -> None:
    raw = "Ren\u0065\u0301e Dupont\x00\n\n\n\nSkills:\tPython,  e\ufb03cient \ufb01nance\r\nSQL   \n".encode()
    doc = extract_document(raw, filename="cv.txt")
    assert doc.kind == "text" and doc.extractor == "text" and doc.pages == 1
    assert doc.text == "Renée Dupont\n\nSkills: Python, efficient finance\nSQL"
    assert doc.hidden_text == "" and doc.flags == ()


@pytest.mark.parametrize(
    "encoded",
    [
        "José García – Staff Accountant\nGAAP".encode("utf-16"),  # with BOM
        "José García – Staff Accountant\nGAAP".encode("utf-16-le"),  # without BOM
        "José García – Staff Accountant\nGAAP".encode("cp1252"),
        b"\xef\xbb\xbf" + "José García – Staff Accountant\nGAAP".encode(),
    ],
)
def test_text_encodings(encoded: bytes) -> None:
    assert extract_document(encoded).text == "José García – Staff Accountant\nGAAP"


def test_markdown_is_text() -> None:
    md = b"# Chen Wei\n\n## Skills\n- Go\n- Kubernetes <br> Docker\n"
    doc = extract_document(md, filename="cv.md")
    assert doc.kind == "text"
    assert doc.text.splitlines() == ["# Chen Wei", "", "## Skills", "- Go", "- Kubernetes <br> Docker"]


def test_html_strips_markup_and_hides_hidden_elements() -> None:
    html = b"""<!DOCTYPE html><html><head><title>CV</title><style>p{color:red}</style></head>
    <body><h1>Priya Raman</h1><script>alert('x')</script>
    <p>Frontend &amp; <b>React</b> engineer</p>
    <ul><li>TypeScript</li><li>CSS</li></ul>
    <table><tr><th>Years</th><th>Skill</th></tr><tr><td>5</td><td>JavaScript</td></tr></table>
    <div style="display: none">Kubernetes Terraform Kafka</div>
    <p hidden>blockchain</p></body></html>"""
    doc = extract_document(html, filename="cv.txt")
    assert doc.kind == "html" and doc.extractor == "html"
    lines = doc.text.splitlines()
    assert "Priya Raman" in lines and "Frontend & React engineer" in lines
    assert "- TypeScript" in lines and "Years | Skill" in lines and "5 | JavaScript" in lines
    assert "alert" not in doc.text and "color:red" not in doc.text and "CV" not in lines
    assert "Kubernetes" not in doc.text and "blockchain" not in doc.text
    assert "Kubernetes Terraform Kafka" in doc.hidden_text and "blockchain" in doc.hidden_text
    assert FLAG_HIDDEN_TEXT in doc.flags


def test_normalize_text_rules() -> None:
    assert normalize_text("a\u00a0b\u200b\n\n\n\nc\x0cd  \t e\n") == "a b\n\nc\nd e"
    assert normalize_text("cloud\ufffenative") == "cloud-native"


def test_truncation_flag() -> None:
    text = ("Python developer line\n" * 50).encode()
    doc = extract_document(text, settings=Settings(max_text_chars=100))
    assert len(doc.text) <= 100 and FLAG_TRUNCATED in doc.flags
    assert doc.text.endswith("line")  # cut at a line boundary


# ---------------------------------------------------------------------------- detect


def test_detection_ignores_the_file_name() -> None:
    docx_data = docx_bytes(cv_docx)
    pdf_data = simple_pdf(["Priya Raman", "Frontend Engineer"])
    assert extract_document(docx_data, filename="cv.pdf").kind == "docx"
    assert extract_document(pdf_data, filename="cv.docx").kind == "pdf"
    assert extract_document(pdf_data, filename=None).kind == "pdf"
    assert detect_kind(b"<html><body><p>x</p></body></html>") == "html"
    assert detect_kind(b"# Title\n\nplain <br> text") == "text"


def test_an_executable_in_front_of_a_pdf_is_refused() -> None:
    pdf_data = simple_pdf(["Priya Raman", "Frontend Engineer"])
    assert detect_kind(b"%junk%\n" + pdf_data) == "pdf"  # junk before the header is fine...
    for magic in (b"MZ\x90\x00\x03", b"\x7fELF\x02\x01"):
        with pytest.raises(UnsupportedDocumentType, match="executable"):  # ...a program is not
            detect_kind(magic + b"\x00" * 100 + pdf_data)


# ---------------------------------------------------------------------------- PDF


def test_single_column_pdf() -> None:
    data = simple_pdf(["Priya Raman", "Frontend Engineer", "Skills: JavaScript, TypeScript, React"])
    doc = extract_document(data)
    assert doc.kind == "pdf" and doc.extractor == "pypdfium2" and doc.pages == 1
    assert doc.text.splitlines() == ["Priya Raman", "Frontend Engineer", "Skills: JavaScript, TypeScript, React"]
    assert doc.flags == ()


def test_two_column_pdf_keeps_columns_together() -> None:
    data = two_column_pdf()
    # The generator interleaves the columns; pdfium alone reads them mixed.
    raw = pdfium_text(data)
    assert raw.index("SUMMARY") < raw.index("SKILLS")
    doc = extract_document(data)
    lines = [line for line in doc.text.splitlines() if line]
    assert lines[0] == "Ada Lovelace"
    assert lines[1 : 1 + len(LEFT)] == LEFT
    assert lines[1 + len(LEFT) :] == RIGHT
    assert FLAG_MULTI_COLUMN in doc.flags


def test_timeline_layout_reads_rows() -> None:
    """Dates in a narrow left column beside each job: a row, not a column."""
    jobs = [
        ("Jan 2019 - Present", ["Senior Engineer, Finch", "- Python services", "- PostgreSQL tuning"]),
        ("03/2015 to 12/2018", ["Developer, Ardoise", "- Django APIs", "- Docker images"]),
        ("2012-2015", ["Junior Developer, Lumen", "- PHP sites", "- MySQL reports"]),
    ]

    def draw(pdf: FPDF, page: int) -> None:
        y = 100.0
        for dates, lines in jobs:
            pdf.text(60, y, dates)
            for line in lines:
                pdf.text(200, y, line)
                y += 15
            y += 12

    text = extract_document(make_pdf(draw)).text
    assert "Jan 2019 - Present Senior Engineer, Finch" in text
    assert "03/2015 to 12/2018 Developer, Ardoise" in text


def test_spacing_recovered_on_tightly_set_words() -> None:
    words = ["Prepared", "quarterly", "and", "annual", "financial", "statements", "for", "seventeen", "communities"]

    def draw(pdf: FPDF, page: int) -> None:
        for row in range(4):
            x = 72.0
            for w in words:
                pdf.text(x, 100 + row * 14, w)
                x += pdf.get_string_width(w) + 1.8  # 0.18 em: narrower than pdfium expects
        pdf.set_char_spacing(3)
        pdf.text(72, 200, "SKILLS AND TOOLS")  # letter-spaced: must stay words

    data = make_pdf(draw)
    assert "annualfinancial" in pdfium_text(data)  # the problem is reproduced
    doc = extract_document(data)
    assert doc.text.splitlines()[0] == " ".join(words)
    assert "SKILLS AND TOOLS" in doc.text
    assert FLAG_SPACING_RECOVERED in doc.flags
    assert not looks_unspaced(doc.text)


def test_looks_unspaced_detector() -> None:
    good = "Prepared quarterly and annual financial statements for seventeen communities. " * 8
    bad = "Preparedquarterly and annualfinancialstatements forseventeencommunities and investors. " * 8
    assert not looks_unspaced(good)
    assert looks_unspaced(bad)
    assert not looks_unspaced("internationalization")  # too little text to judge


def test_layout_inserts_space_from_geometry() -> None:
    """pdf_layout alone: glyph boxes with a word-sized gap and no source space."""
    word_a, word_b = "annual", "financial"
    chars, boxes, x = [], [], 10.0
    for word in (word_a, word_b):
        for ch in word:
            chars.append(ch)
            boxes.append((x, x + 5.0, 100.0, 109.0))
            x += 5.0
        x += 2.5  # ~0.28 of the box height
    n = len(chars)
    glyphs = Glyphs(chars, np.array(boxes), np.zeros(n, bool), np.zeros(n, bool))
    out = layout_page(glyphs)
    assert out.text == "annual financial" and out.spaces_added == 1
    assert layout_page(glyphs, recover_spaces=False).text == "annualfinancial"


def test_pdf_hidden_text_is_excluded_and_flagged() -> None:
    def draw(pdf: FPDF, page: int) -> None:
        pdf.text(72, 100, "Priya Raman")
        pdf.text(72, 116, "Frontend Engineer with React")
        pdf.set_text_color(255, 255, 255)
        pdf.text(72, 140, "Kubernetes Terraform Kafka")  # white on white
        pdf.set_fill_color(20, 30, 60)
        pdf.rect(60, 200, 300, 40, style="F")
        pdf.text(72, 224, "Visible on dark")  # white on a dark box: visible
        pdf.set_text_color(0, 0, 0)
        pdf.set_font("helvetica", size=1)
        pdf.text(72, 300, "blockchain quantum")  # 1 pt
        pdf.set_font("helvetica", size=10)
        pdf.text(A4_W + 50, 400, "offpage keywords")

    doc = extract_document(make_pdf(draw))
    assert "Priya Raman" in doc.text and "Visible on dark" in doc.text
    for word in ("Kubernetes", "blockchain", "offpage"):
        assert word not in doc.text
        assert word in doc.hidden_text
    assert FLAG_HIDDEN_TEXT in doc.flags


def test_clean_pdf_has_no_hidden_flag() -> None:
    doc = extract_document(simple_pdf(["Jose Garcia", "Staff Accountant"]))
    assert doc.hidden_text == "" and FLAG_HIDDEN_TEXT not in doc.flags


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotated_text_reads_in_its_own_direction(angle: int) -> None:
    def draw(pdf: FPDF, page: int) -> None:
        with pdf.rotation(angle, x=300, y=400):
            for k in range(6):
                pdf.text(150, 300 + 14 * k, f"Rotated line {k} Kafka")

    lines = extract_document(make_pdf(draw)).text.splitlines()
    assert lines == [f"Rotated line {k} Kafka" for k in range(6)]


def test_page_rotate_key() -> None:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(simple_pdf(["Chen Wei", "DevOps Engineer"]))).pages:
        page.rotate(90)
        writer.add_page(page)
    buf = io.BytesIO()
    writer.write(buf)
    assert extract_document(buf.getvalue()).text.splitlines() == ["Chen Wei", "DevOps Engineer"]


def test_multi_page_pdf() -> None:
    doc = extract_document(simple_pdf(["Page text"], pages=3))
    assert doc.pages == 3 and doc.text.split() == ["Page", "text"] * 3


# ---------------------------------------------------------------------------- DOCX


def test_docx_paragraphs_and_tables_in_order() -> None:
    doc = extract_document(docx_bytes(cv_docx))
    assert doc.kind == "docx" and doc.extractor == "python-docx"
    lines = doc.text.splitlines()
    assert lines == [
        "Jonas Example | jonas@example.com",
        "Data Scientist",
        "Skills",
        "Programming | Python, SQL",
        "Big data | Spark",
        "Experience",
        "- Data Scientist at Bramble Retail",
        "Mar 2022 – Present | Forecasting with pandas",
        "Education: BSc Statistics",
    ]
    assert doc.flags == ()


def test_docx_hyperlink_runs_and_layout_tables() -> None:
    def build(d: docx.document.Document) -> None:
        p = d.add_paragraph("Portfolio: ")
        link = OxmlElement("w:hyperlink")
        run = OxmlElement("w:r")
        t = OxmlElement("w:t")
        t.text = "github.com/example"
        run.append(t)
        link.append(run)
        p._p.append(link)
        layout = d.add_table(rows=1, cols=2)
        left, right = layout.cell(0, 0), layout.cell(0, 1)
        left.text = "CONTACT"
        for item in ("x@example.com", "SKILLS", "Python", "SQL"):
            left.add_paragraph(item)
        right.text = "SUMMARY"
        right.add_paragraph("Data engineer.")

    lines = extract_document(docx_bytes(build)).text.splitlines()
    assert lines[0] == "Portfolio: github.com/example"
    # A cell with many lines is a page column: read as a block, not glued into one row.
    assert lines[1:] == ["CONTACT", "x@example.com", "SKILLS", "Python", "SQL", "SUMMARY", "Data engineer."]


def test_docx_hidden_runs() -> None:
    def build(d: docx.document.Document) -> None:
        p = d.add_paragraph("Data Scientist ")
        p.add_run("Kubernetes").font.hidden = True
        white = p.add_run(" Terraform")
        white.font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
        tiny = p.add_run(" blockchain")
        tiny.font.size = Pt(1)
        p.add_run(" with pandas")
        table = d.add_table(rows=1, cols=1)
        cell = table.cell(0, 0)
        shade(cell, "1F3864")
        cell.paragraphs[0].add_run("White on navy").font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)

    doc = extract_document(docx_bytes(build))
    assert doc.text.splitlines() == ["Data Scientist with pandas", "White on navy"]
    for word in ("Kubernetes", "Terraform", "blockchain"):
        assert word in doc.hidden_text
    assert FLAG_HIDDEN_TEXT in doc.flags


# ---------------------------------------------------------------------------- refusals


def test_too_large() -> None:
    with pytest.raises(DocumentTooLarge) as e:
        extract_document(b"x" * 200, filename="cv.txt", settings=Settings(max_upload_bytes=100))
    assert e.value.code == "document_too_large"
    assert "cv.txt" in str(e.value)


def test_too_many_pages() -> None:
    with pytest.raises(TooManyPages) as e:
        extract_document(simple_pdf(["x"], pages=3), settings=Settings(max_pdf_pages=2))
    assert e.value.code == "too_many_pages"


def test_zip_bomb_docx() -> None:
    good = docx_bytes(cv_docx)
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("word/media/bomb.bin", b"\x00" * (4 * 1024 * 1024))
    bomb = buf.getvalue()
    assert len(bomb) < 100_000  # small on disk, 4 MiB inflated
    settings = Settings(max_docx_inflated_bytes=1024 * 1024)
    with pytest.raises(ArchiveTooLarge) as e:
        extract_document(bomb, settings=settings)
    assert e.value.code == "archive_too_large"
    assert extract_document(good, settings=settings).kind == "docx"


@pytest.fixture
def never_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if python-docx is asked to open the package or a PDF page is laid out."""

    def parsed(*args, **kwargs):
        raise AssertionError("the document was parsed before its budget was checked")

    monkeypatch.setattr("cvmatch_ray.extract.docx.Document", parsed)
    monkeypatch.setattr("cvmatch_ray.extract.pdf.layout_page", parsed)


def test_docx_inflating_to_45_mb_is_refused_unparsed(never_parsed: None) -> None:
    # The probe's shape: a small file whose body inflates to ~45 MB, under the 50 MB guard.
    bomb = inflating_docx(45 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(DocumentTooComplex) as e:
        extract_document(bomb, filename="bomb.docx")
    assert e.value.code == "document_too_complex"
    assert "XML inflates to" in e.value.message


def test_docx_compression_ratio_budget(never_parsed: None) -> None:
    # 3 MiB of XML, under the size budget, but inflating hundreds of times.
    with pytest.raises(DocumentTooComplex, match="inflates [0-9]+ times"):
        extract_document(inflating_docx(3 * 1024 * 1024))


def test_docx_budgets_pass_an_ordinary_docx_and_count_files() -> None:
    good = docx_bytes(cv_docx)  # its styles.xml inflates ~30 times: under the ratio budget
    assert "Bramble Retail" in extract_document(good).text
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        files = len(zf.infolist())
    with pytest.raises(DocumentTooComplex, match="files"):
        extract_document(good, settings=Settings(max_docx_entries=files - 1))


def test_pdf_character_budget_is_checked_before_layout(never_parsed: None) -> None:
    data = simple_pdf(["Python engineer with SQL and Spark experience"] * 40)
    with pytest.raises(DocumentTooComplex) as e:
        extract_document(data, settings=Settings(max_pdf_chars=500))
    assert e.value.code == "document_too_complex"


def test_pdf_character_budget_counts_all_pages() -> None:
    data = simple_pdf(["Python engineer with SQL and Spark experience"] * 10, pages=3)
    one_page = len(extract_document(simple_pdf(["Python engineer with SQL and Spark experience"] * 10)).text)
    assert extract_document(data, settings=Settings(max_pdf_chars=4 * one_page)).pages == 3
    with pytest.raises(DocumentTooComplex):
        extract_document(data, settings=Settings(max_pdf_chars=2 * one_page))


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(simple_pdf(["Secret CV"]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="pw", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def scanned_pdf() -> bytes:
    def draw(pdf: FPDF, page: int) -> None:
        pdf.set_fill_color(50, 50, 50)
        for i in range(20):
            pdf.rect(70, 80 + 20 * i, 300, 8, style="F")

    return make_pdf(draw)


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (encrypted_pdf(), EncryptedDocument, "encrypted_document"),
        (scanned_pdf(), NoTextLayer, "no_text_layer"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, UnsupportedDocumentType, "unsupported_document_type"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), UnsupportedDocumentType, "unsupported_document_type"),
        (bytes(range(256)) * 8, UnsupportedDocumentType, "unsupported_document_type"),
        (b"", EmptyDocument, "empty_document"),
        (b"  \n\t \r\n ", EmptyDocument, "empty_document"),
        (b"<html><body><script>x()</script></body></html>", EmptyDocument, "empty_document"),
        (b"%PDF-1.7\n" + b"\x13\x37garbage" * 50, CorruptDocument, "corrupt_document"),
        (b"PK\x03\x04" + b"\x00garbage" * 50, CorruptDocument, "corrupt_document"),
    ],
    ids=["encrypted", "scanned", "png", "legacy-doc", "binary", "empty", "whitespace", "html-no-text",
         "corrupt-pdf", "corrupt-zip"],
)
def test_refusals(data: bytes, error: type[ExtractionError], code: str) -> None:
    with pytest.raises(error) as e:
        extract_document(data, filename="upload.bin")
    assert isinstance(e.value, ValueError)
    assert e.value.code == code
    assert e.value.message


def test_other_office_zip_is_unsupported() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(UnsupportedDocumentType, match="Excel"):
        extract_document(buf.getvalue())


def test_docx_with_broken_xml_is_corrupt() -> None:
    good = docx_bytes(cv_docx)
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            dst.writestr(info, b"<w:document><unclosed" if info.filename == "word/document.xml" else body)
    with pytest.raises(CorruptDocument):
        extract_document(buf.getvalue())


def test_only_hidden_text_is_empty() -> None:
    def draw(pdf: FPDF, page: int) -> None:
        pdf.set_text_color(255, 255, 255)
        pdf.text(72, 100, "Kubernetes Terraform Kafka")

    with pytest.raises(EmptyDocument):
        extract_document(make_pdf(draw))


# ---------------------------------------------------------------------------- examples


def test_examples_extract() -> None:
    cvs = {p.name: extract_document(p.read_bytes(), filename=p.name) for p in (EXAMPLES / "cvs").iterdir()}
    assert set(cvs) == {
        "amelie_dubois_backend.pdf", "jonas_muller_data.docx", "priya_raman_frontend.pdf",
        "jose_garcia_accountant.txt", "chen_wei_devops.md",
    }
    amelie = cvs["amelie_dubois_backend.pdf"]
    assert amelie.text.splitlines()[0] == "Amélie Dubois-Lefèvre"  # white on the dark header
    assert amelie.hidden_text == "" and FLAG_MULTI_COLUMN in amelie.flags
    lines = amelie.text.splitlines()
    # Sidebar read as one block, then the main column.
    assert lines.index("Kafka") < lines.index("LANGUAGES") < lines.index("SUMMARY") < lines.index("EXPERIENCE")
    assert "k8s" in amelie.text
    jonas = cvs["jonas_muller_data.docx"]
    assert "Programming | Python, SQL, R" in jonas.text.splitlines()
    assert cvs["jose_garcia_accountant.txt"].text.startswith("José García")
    for jd in (EXAMPLES / "jds").iterdir():
        assert extract_document(jd.read_bytes()).kind == "text"


@pytest.mark.parametrize(
    ("name", "error"),
    [("encrypted.pdf", EncryptedDocument), ("scanned.pdf", NoTextLayer), ("image.png", UnsupportedDocumentType),
     ("empty.txt", EmptyDocument)],
)
def test_bad_examples(name: str, error: type[ExtractionError]) -> None:
    with pytest.raises(error):
        extract_document((EXAMPLES / "bad" / name).read_bytes(), filename=name)
