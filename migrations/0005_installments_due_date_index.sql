-- pgsov: lock_timeout=5s statement_timeout=0
-- 0005_installments_due_date_index: collections look installments up by due date. Built
-- CONCURRENTLY so a large table keeps taking writes; pgsov runs this file outside a
-- transaction (it holds nothing else) with no statement timeout (the build may be long).
CREATE INDEX CONCURRENTLY installments_due_date_idx ON app.installments (due_date);
