-- 0002_clusters: clusters (edge and cloud), their pairing tokens and the command queue of their
-- links (see src/core/types.h and src/cluster/README.md). Same conventions as 0001_init.
-- nodes and resources are JSON text as last reported by the cluster over its link.

CREATE TABLE clusters (
  id                    TEXT PRIMARY KEY,
  name                  TEXT NOT NULL UNIQUE,
  kind                  TEXT NOT NULL,
  state                 TEXT NOT NULL,
  credential_id         TEXT,
  provider              TEXT,
  region                TEXT,
  instance_type         TEXT,
  image                 TEXT,
  disk_gb               BIGINT,
  cluster_url           TEXT NOT NULL,
  software_version      TEXT NOT NULL,
  key_ciphertext        BLOB NOT NULL,
  link_interval_seconds BIGINT NOT NULL,
  last_seen             BIGINT,
  paired_at             BIGINT,
  nodes                 TEXT NOT NULL,
  node_count            BIGINT NOT NULL,
  resources             TEXT NOT NULL,
  created_by            TEXT NOT NULL,
  created_at            BIGINT NOT NULL,
  updated_at            BIGINT NOT NULL,
  version               BIGINT NOT NULL
);

CREATE INDEX clusters_state_idx ON clusters (state, last_seen);

CREATE TABLE cluster_tokens (
  id         TEXT PRIMARY KEY,
  cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
  token_hash TEXT NOT NULL UNIQUE,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  used_at    BIGINT,
  created_by TEXT NOT NULL
);

CREATE INDEX cluster_tokens_cluster_idx ON cluster_tokens (cluster_id);

CREATE TABLE cluster_commands (
  id            TEXT PRIMARY KEY,
  cluster_id    TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
  type          TEXT NOT NULL,
  args          TEXT NOT NULL,
  state         TEXT NOT NULL,
  result        TEXT NOT NULL,
  error_code    TEXT NOT NULL,
  error_message TEXT NOT NULL,
  deliveries    BIGINT NOT NULL,
  created_at    BIGINT NOT NULL,
  delivered_at  BIGINT,
  completed_at  BIGINT
);

CREATE INDEX cluster_commands_pending_idx ON cluster_commands (cluster_id, state, created_at);
