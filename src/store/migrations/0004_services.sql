-- 0004_services: application services and their instances as the root's scheduler sees them
-- (src/core/types.h Service, ServiceInstance). Same conventions as 0001_init.

CREATE TABLE services (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  spec        TEXT NOT NULL,
  replicas    BIGINT NOT NULL,
  deployed    BIGINT NOT NULL,
  created_by  TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  version     BIGINT NOT NULL
);

CREATE TABLE service_instances (
  job_id      TEXT PRIMARY KEY,
  service_id  TEXT NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
  replica     BIGINT NOT NULL,
  cluster_id  TEXT NOT NULL,
  node_id     TEXT NOT NULL,
  address     TEXT NOT NULL,
  state       TEXT NOT NULL,
  reason      TEXT NOT NULL,
  command_id  TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL
);

CREATE INDEX service_instances_service_idx ON service_instances (service_id, replica);
