-- 0004_installments_payments: a contract's schedule and the payments against it.
CREATE TABLE app.installments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contract_id  bigint NOT NULL REFERENCES app.contracts (id),
    number       integer NOT NULL CHECK (number >= 1),
    due_date     date NOT NULL,
    amount       numeric(14,2) NOT NULL CHECK (amount > 0),
    principal    numeric(14,2) NOT NULL CHECK (principal >= 0),
    interest     numeric(14,2) NOT NULL CHECK (interest >= 0),
    CONSTRAINT installments_contract_number_key UNIQUE (contract_id, number),
    CONSTRAINT installments_parts_sum CHECK (principal + interest = amount)
);

CREATE TABLE app.payments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    installment_id  bigint NOT NULL REFERENCES app.installments (id),
    paid_at         timestamptz NOT NULL DEFAULT now(),
    amount          numeric(14,2) NOT NULL CHECK (amount > 0)
);
CREATE INDEX payments_installment_id_idx ON app.payments (installment_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON app.installments, app.payments TO app_user;
GRANT SELECT ON app.installments, app.payments TO app_client;

ALTER TABLE app.installments ENABLE ROW LEVEL SECURITY;
CREATE POLICY installments_app_user ON app.installments TO app_user USING (true) WITH CHECK (true);
CREATE POLICY installments_app_client ON app.installments FOR SELECT TO app_client
    USING (contract_id IN (SELECT c.id FROM app.contracts c
                           WHERE c.client_id = app.current_client_id()));

ALTER TABLE app.payments ENABLE ROW LEVEL SECURITY;
CREATE POLICY payments_app_user ON app.payments TO app_user USING (true) WITH CHECK (true);
CREATE POLICY payments_app_client ON app.payments FOR SELECT TO app_client
    USING (installment_id IN (SELECT i.id FROM app.installments i
                              JOIN app.contracts c ON c.id = i.contract_id
                              WHERE c.client_id = app.current_client_id()));
