"""1:K search in the PostgreSQL gallery (postgres.py): exact SQL below
search.ANN_MIN_SIZE embeddings, pgvector's HNSW index above (built the first time it is
needed, then kept up by PostgreSQL), its shortlist re-ranked per person by the min rule as
index.py does with FAISS, in the same SQL statement (one round trip, k rows back)."""

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
        self._ef: int | None = None
        self.repairs: list[str] = []  # nothing to repair: the index lives in the database

    def close(self) -> None:
        pass

    def erased(self, forgotten: np.ndarray | None = None) -> list[str]:
        """Nothing to do: the HNSW index forgets deleted rows with them."""
        return []

    def _use_hnsw(self) -> bool:
        """Whether to search the HNSW index: yes once it exists (built here or by another
        replica); else build it the first time the gallery holds ANN_MIN_SIZE embeddings.
        The size test counts at most ANN_MIN_SIZE rows: a COUNT(*) on every search was a
        full scan (12 ms at 10^5 rows, linear beyond), most of a query's time."""
        if self._has_hnsw:
            return True
        if self.store.one(_INDEX_EXISTS) is None:
            bounded = "SELECT COUNT(*) FROM (SELECT 1 FROM convlens_embeddings LIMIT %s) s"
            if self.store.one(bounded, (_search.ANN_MIN_SIZE,))[0] < _search.ANN_MIN_SIZE:
                return False
            self.store.write(_build_hnsw)
        self._has_hnsw = True
        return True

    def _ef_search(self, ef: int) -> None:
        """hnsw.ef_search for this connection, set only when it changes (one round trip)."""
        if self._ef != ef:
            self.store._run(lambda: self.store.con.execute(f"SET hnsw.ef_search = {int(ef)}"))
            self._ef = ef

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[tuple[str, float]]]:
        """Per query, the k nearest people (min rule over each person's embeddings), in SQL:
        exactly over every row, or over the HNSW index's `shortlist` nearest rows."""
        q = _search.check_vectors(queries, self.store.dim)
        if not self._use_hnsw():
            return [
                [(n, float(d)) for n, d in self.store.all(_EXACT, (vector_text(v), k))] for v in q
            ]
        shortlist = max(EF_SEARCH, 16 * k)
        self._ef_search(min(1000, shortlist))
        return [
            [(n, float(d)) for n, d in self.store.all(_SHORTLIST, (vector_text(v), shortlist, k))]
            for v in q
        ]


# The ef_search (HNSW candidate list) and shortlist size: at 10^5 random unit vectors, 64 gave
# recall@1 0.98 for noisy copies of enrolled vectors and 0.28 for random queries, 100 gave
# 0.995 and 0.40 (FAISS IVF: 1.0 and 0.42) for 0.5 ms more (benchmarks/pg_search.py).
EF_SEARCH = 100
_INDEX_EXISTS = "SELECT 1 FROM pg_indexes WHERE indexname = 'convlens_embeddings_hnsw'"
_EXACT = (
    "SELECT p.name, MIN(e.vector <-> %s::vector) AS d FROM convlens_embeddings e "
    "JOIN convlens_people p ON p.id = e.person_id GROUP BY p.name ORDER BY d LIMIT %s"
)
_SHORTLIST = (
    "SELECT p.name, MIN(s.d) AS d FROM (SELECT person_id, vector <-> %s::vector AS d "
    "FROM convlens_embeddings ORDER BY d LIMIT %s) s "
    "JOIN convlens_people p ON p.id = s.person_id GROUP BY p.name ORDER BY d LIMIT %s"
)


def _build_hnsw(cur) -> None:
    """Built once over the rows (much faster than kept up row by row during a bulk load;
    afterwards PostgreSQL keeps it up). pgvector builds fastest while the graph fits in
    maintenance_work_mem, whose default 64 MB does not hold 10^6 128-d rows: sized to the
    rows here (up to 2 GB), for this transaction only."""
    rows = cur.execute("SELECT COUNT(*) FROM convlens_embeddings").fetchone()[0]
    dim = cur.execute("SELECT vector_dims(vector) FROM convlens_embeddings LIMIT 1").fetchone()[0]
    mb = min(2048, max(64, int(rows * (4 * dim + 300) * 1.5 / 2**20)))
    cur.execute(f"SET LOCAL maintenance_work_mem = '{mb}MB'")
    cur.execute(
        "CREATE INDEX IF NOT EXISTS convlens_embeddings_hnsw ON convlens_embeddings "
        "USING hnsw (vector vector_l2_ops)"
    )
