"""Every Markdown link of README.md and docs/ points at a file of the repository that exists.

External web links (http, https, mailto) are not followed. A link to a heading
(``file.md#section`` or ``#section``) must name a heading of that file, with GitHub's anchors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
EXTERNAL = ("http://", "https://", "mailto:")

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`+[^`\n]*`+")
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
AUTOLINK = re.compile(r"<((?:https?|mailto|file|ftp):[^>\s]+)>")
HTML = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def links(text: str) -> list[str]:
    """Link targets of a Markdown text, code blocks and code spans left out."""
    text = FENCE.sub("", text)
    text = CODE_SPAN.sub("", text)
    found = [m.group(1) for m in INLINE.finditer(text)]
    found += [m.group(1) for m in REFERENCE.finditer(text)]
    found += [m.group(1) for m in AUTOLINK.finditer(text)]
    found += [m.group(1) for m in HTML.finditer(text)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    heading = heading.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(text):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    out |= set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    return out


def problems(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of one page (empty when every link is fine)."""
    out = []
    rel_page = page.relative_to(root)
    for target in links(page.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL):
            continue
        where = f"{rel_page}: link ({target})"
        if re.match(r"^[a-zA-Z][\w+.-]*:", target):
            out.append(f"{where} uses a scheme other than http, https or mailto")
            continue
        path_part, _, fragment = target.partition("#")
        if path_part.startswith("/"):
            out.append(f"{where} is an absolute path: link relative to the page")
            continue
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(root):
            out.append(f"{where} points outside the repository: a user with only the repository cannot open it")
            continue
        if not resolved.exists():
            out.append(f"{where} points at {resolved.relative_to(root)}, which does not exist")
            continue
        if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            out.append(f"{where}: {resolved.relative_to(root)} has no heading with anchor #{fragment}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_points_inside_the_repository_at_something_that_exists(page):
    assert not problems(page), "\n".join(problems(page))


def test_the_checker_catches_each_kind_of_bad_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# A title\n\n## Second `part`\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](there.md) [ok anchor](there.md#second-part) [web](https://example.org/x) [self](#local)\n"
        "# Local\n"
        "[outside](../../shared/API.md) [missing](gone.md) [bad anchor](there.md#nothing)\n"
        "[abs](/etc/passwd) [file](file:///etc/passwd)\n"
        "[ref]: ../../elsewhere/README.md\n"
        '<a href="nowhere.md">html</a>\n'
        "```\n[in code](../../never-checked.md)\n```\n"
        "`[in a span](../../never-checked.md)`\n",
        encoding="utf-8",
    )
    found = "\n".join(problems(page, tmp_path))
    for target in ("../../shared/API.md", "gone.md", "there.md#nothing", "/etc/passwd", "file:///etc/passwd",
                   "../../elsewhere/README.md", "nowhere.md"):
        assert f"({target})" in found, (target, found)
    for fine in ("there.md)", "there.md#second-part", "example.org", "#local", "never-checked"):
        assert f"({fine}" not in found, (fine, found)
    assert len(found.splitlines()) == 7


WORKSPACE_ONLY = re.compile(r"(?:\.\./)?shared/(?:API\.md|DATA_CONTRACT\.md|STYLE\.md|crm/|data/)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_page_sends_the_reader_to_the_workspace_folder(page):
    """Not even as plain text: the repository's own pages say what those files said."""
    hits = [f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
            if WORKSPACE_ONLY.search(line)]
    assert not hits, ("these lines name files of the workspace's shared/ folder, which a clone does not have; "
                      "link the page of docs/ that covers it:\n" + "\n".join(hits))
