-- pgsov: statement_timeout=0
DROP INDEX CONCURRENTLY app.installments_due_date_idx;
