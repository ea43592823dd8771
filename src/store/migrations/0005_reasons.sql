-- 0005_reasons: machine-readable reasons next to the text shown to people (issue 11):
-- a pending instance's reason code ("no_worker_capacity") and a failed cluster command's reason.

ALTER TABLE service_instances ADD COLUMN reason_code TEXT NOT NULL DEFAULT '';
ALTER TABLE cluster_commands ADD COLUMN error_reason TEXT NOT NULL DEFAULT '';
