-- 0003_workers: the broker's worker rows (src/core/types.h Worker) and what the broker made for
-- each cloud cluster (clusters.cloud, JSON). Same conventions as 0001_init.

ALTER TABLE clusters ADD COLUMN cloud TEXT NOT NULL DEFAULT '{}';

CREATE TABLE workers (
  id            TEXT PRIMARY KEY,
  cluster_id    TEXT NOT NULL REFERENCES clusters (id) ON DELETE RESTRICT,
  name          TEXT NOT NULL UNIQUE,
  state         TEXT NOT NULL,
  instance_type TEXT NOT NULL,
  image         TEXT NOT NULL,
  disk_gb       BIGINT NOT NULL,
  generation    BIGINT NOT NULL,
  handle        TEXT NOT NULL,
  provider_id   TEXT NOT NULL,
  address       TEXT NOT NULL,
  node_id       TEXT NOT NULL,
  last_error    TEXT NOT NULL,
  operation_id  TEXT NOT NULL,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL,
  version       BIGINT NOT NULL
);

CREATE INDEX workers_cluster_idx ON workers (cluster_id, created_at);
