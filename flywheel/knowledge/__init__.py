"""The knowledge base behind retrieval: a source of truth, chunked, embedded, versioned in Chroma."""
