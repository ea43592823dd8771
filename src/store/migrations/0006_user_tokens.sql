-- 0006_user_tokens: a user's token generation (issue 14). Every access token carries the
-- generation it was issued under; changing the password increments it, which revokes every
-- token issued before.

ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
