"""1:K search in the PostgreSQL gallery (postgres.py): exact SQL below
search.ANN_MIN_SIZE embeddings, pgvector's HNSW index above (built the first time it is
needed, then kept up by PostgreSQL), its shortlist re-ranked per person by the min rule as
index.py does with FAISS."""

from __future__ import annotations

import numpy as np

from convlens.faces import search as _search
from convlens.faces.gallery.postgres import PostgresStore, vector_text


class PostgresIndex:
    """k nearest people by the min rule: exact SQL for small galleries, pgvector's HNSW
    shortlist re-ranked per person above search.ANN_MIN_SIZE embeddings."""

    def __init__(self, store: PostgresStore):
        self.store = store
        self._has_hnsw = False
        self.repairs: list[str] = []  # nothing to repair: the index lives in the database

    def close(self) -> None:
        pass

    def erased(self, forgotten: np.ndarray | None = None) -> list[str]:
        """Nothing to do: the HNSW index forgets deleted rows with them."""
        return []

    def _ensure_hnsw(self) -> None:
        """Build the HNSW index the first time the gallery is big enough to need it: built
        once over the rows is much faster than kept up row by row during a bulk load;
        afterwards PostgreSQL keeps it up to date."""
        if self._has_hnsw:
            return
        sql = "SELECT 1 FROM pg_indexes WHERE indexname = 'convlens_embeddings_hnsw'"
        if self.store.one(sql) is None:
            self.store.write(lambda cur: cur.execute(
                "CREATE INDEX IF NOT EXISTS convlens_embeddings_hnsw ON convlens_embeddings "
                "USING hnsw (vector vector_l2_ops)"
            ))  # fmt: skip
        self._has_hnsw = True

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[tuple[str, float]]]:
        q = _search.check_vectors(queries, self.store.dim)
        if self.store.count() < _search.ANN_MIN_SIZE:
            sql = (
                "SELECT p.name, MIN(e.vector <-> %s::vector) AS d FROM convlens_embeddings e "
                "JOIN convlens_people p ON p.id = e.person_id GROUP BY p.name ORDER BY d LIMIT %s"
            )
            return [[(n, float(d)) for n, d in self.store.all(sql, (vector_text(v), k))] for v in q]
        self._ensure_hnsw()
        shortlist = max(64, 16 * k)
        self.store._run(
            lambda: self.store.con.execute(f"SET hnsw.ef_search = {min(1000, shortlist)}")
        )
        sql = (
            "SELECT p.name, s.d FROM (SELECT person_id, vector <-> %s::vector AS d FROM "
            "convlens_embeddings ORDER BY vector <-> %s::vector LIMIT %s) s "
            "JOIN convlens_people p ON p.id = s.person_id"
        )
        out = []
        for v in q:
            best: dict[str, float] = {}
            for name, d in self.store.all(sql, (vector_text(v), vector_text(v), shortlist)):
                best[name] = min(best.get(name, np.inf), float(d))
            out.append(sorted(best.items(), key=lambda t: t[1])[:k])
        return out
