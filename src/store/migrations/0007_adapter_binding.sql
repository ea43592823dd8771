-- 0007_adapter_binding (issue 14): a credential is bound to the adapter chosen when it was added
-- and is decrypted only for that adapter; an adapter may await approval before it gets any.
-- Existing credentials are bound to the adapter of their type seen last (the one the root used
-- until now); adapters registered before are approved.

ALTER TABLE credentials ADD COLUMN adapter_id TEXT NOT NULL DEFAULT '';
ALTER TABLE providers ADD COLUMN approved INTEGER NOT NULL DEFAULT 1;

UPDATE credentials SET adapter_id = COALESCE(
  (SELECT p.id FROM providers p WHERE p.type = credentials.provider
   ORDER BY p.last_seen DESC, p.id LIMIT 1), '');
