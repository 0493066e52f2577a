"""Reading the knowledge source (a directory of .md/.txt files, or a JSONL file of
``{"id", "text", "source"?, "updated_at"?}``) and cutting documents into chunks.

Chunks follow the document's paragraphs, packed up to ``chunk_chars`` characters, so a fact is
not split from its sentence and an unchanged paragraph keeps its content hash (and its embedding)
when another paragraph of the same document changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flywheel.errors import UsageError

TEXT_SUFFIXES = {".md", ".txt"}


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    source: str
    updated_at: str


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>": where it sits
    doc_id: str
    text: str
    source: str
    updated_at: str

    @property
    def content_hash(self) -> str:
        """Identity of the content: the same text of the same document is the same record."""
        return hashlib.sha256(f"{self.doc_id}\x1f{self.text}".encode()).hexdigest()[:32]


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).isoformat()


def load_documents(path: Path) -> list[Document]:
    """Every document of the source, sorted by id; bad input is a usage error naming file and line."""
    if not path.exists():
        raise UsageError(f"knowledge source {path}: no such file or directory")
    docs: list[Document] = []
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES):
            text = file.read_text(encoding="utf-8", errors="replace")
            docs.append(Document(file.relative_to(path).as_posix(), text, str(file), _mtime(file)))
    else:
        seen: set[str] = set()
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    doc_id, text = str(row["id"]), row["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise UsageError(f"{path}:{n}: a knowledge line needs JSON with 'id' and 'text' ({exc})") from exc
                if not isinstance(text, str):
                    raise UsageError(f"{path}:{n}: 'text' must be a string")
                if doc_id in seen:
                    raise UsageError(f"{path}:{n}: duplicate document id {doc_id!r}")
                seen.add(doc_id)
                docs.append(
                    Document(doc_id, text, str(row.get("source") or path), str(row.get("updated_at") or _mtime(path)))
                )
    return sorted(docs, key=lambda d: d.doc_id)


def chunk_document(doc: Document, chunk_chars: int) -> list[Chunk]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", doc.text) if p.strip()]
    pieces: list[str] = []
    current = ""
    for para in paragraphs:
        while len(para) > chunk_chars:  # a paragraph longer than a chunk: cut at a sentence end if possible
            cut = para.rfind(". ", 0, chunk_chars)
            cut = cut + 1 if cut > chunk_chars // 2 else chunk_chars
            if current:
                pieces.append(current)
                current = ""
            pieces.append(para[:cut].strip())
            para = para[cut:].strip()
        if current and len(current) + 2 + len(para) > chunk_chars:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        pieces.append(current)
    return [Chunk(f"{doc.doc_id}#{i}", doc.doc_id, text, doc.source, doc.updated_at) for i, text in enumerate(pieces)]


def chunks_of(path: Path, chunk_chars: int) -> Iterator[Chunk]:
    for doc in load_documents(path):
        yield from chunk_document(doc, chunk_chars)
