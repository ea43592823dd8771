-- 0001_init: the root control plane's first schema (see src/core/types.h).
-- Portable SQL (SQLite and PostgreSQL): timestamps are BIGINT unix milliseconds; lists and objects
-- (roles, capabilities, steps, data) are JSON text; ciphertexts are BLOB (BYTEA on PostgreSQL).
-- No foreign keys on created_by: deleting a user must not be blocked by what it once created.

CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  username      TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  roles         TEXT NOT NULL,
  created_at    BIGINT NOT NULL
);

CREATE TABLE provider_tokens (
  id         TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  used_at    BIGINT,
  created_by TEXT NOT NULL
);

CREATE TABLE providers (
  id             TEXT PRIMARY KEY,
  type           TEXT NOT NULL,
  url            TEXT NOT NULL,
  capabilities   TEXT NOT NULL,
  version        TEXT NOT NULL,
  key_ciphertext BLOB NOT NULL,
  registered_at  BIGINT NOT NULL,
  last_seen      BIGINT NOT NULL
);

CREATE TABLE credentials (
  id                TEXT PRIMARY KEY,
  name              TEXT NOT NULL UNIQUE,
  provider          TEXT NOT NULL,
  secret_ciphertext BLOB NOT NULL,
  created_by        TEXT NOT NULL,
  created_at        BIGINT NOT NULL
);

CREATE TABLE operations (
  id                 TEXT PRIMARY KEY,
  kind               TEXT NOT NULL,
  target_id          TEXT NOT NULL,
  state              TEXT NOT NULL,
  step               BIGINT NOT NULL,
  steps              TEXT NOT NULL,
  attempt            BIGINT NOT NULL,
  next_run_at        BIGINT NOT NULL,
  lease_owner        TEXT NOT NULL,
  lease_until        BIGINT NOT NULL,
  last_error_code    TEXT NOT NULL,
  last_error_message TEXT NOT NULL,
  data               TEXT NOT NULL,
  version            BIGINT NOT NULL,
  created_at         BIGINT NOT NULL,
  updated_at         BIGINT NOT NULL
);

-- ClaimDue scans live operations by due time.
CREATE INDEX operations_claim_idx ON operations (state, next_run_at);
CREATE INDEX operations_target_idx ON operations (target_id, created_at);
CREATE INDEX operations_created_idx ON operations (created_at);
