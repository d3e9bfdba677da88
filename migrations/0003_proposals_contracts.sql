-- 0003_proposals_contracts: credit proposals and the contracts signed from approved ones.
CREATE TABLE app.proposals (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id     bigint NOT NULL REFERENCES app.clients (id),
    amount        numeric(14,2) NOT NULL CHECK (amount > 0),
    term_months   integer NOT NULL CHECK (term_months BETWEEN 1 AND 420),
    rate_monthly  numeric(8,6) NOT NULL CHECK (rate_monthly >= 0 AND rate_monthly < 1),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proposals_client_id_idx ON app.proposals (client_id);

CREATE TABLE app.contracts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    proposal_id  bigint NOT NULL CONSTRAINT contracts_proposal_id_key UNIQUE
                 REFERENCES app.proposals (id),
    client_id    bigint NOT NULL REFERENCES app.clients (id),
    principal    numeric(14,2) NOT NULL CHECK (principal > 0),
    rate         numeric(8,6) NOT NULL CHECK (rate >= 0 AND rate < 1),
    term         integer NOT NULL CHECK (term BETWEEN 1 AND 420),
    signed_at    date NOT NULL,
    first_due    date NOT NULL,
    CHECK (first_due > signed_at)
);
CREATE INDEX contracts_client_id_idx ON app.contracts (client_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON app.proposals, app.contracts TO app_user;
GRANT SELECT ON app.proposals, app.contracts TO app_client;

ALTER TABLE app.proposals ENABLE ROW LEVEL SECURITY;
CREATE POLICY proposals_app_user ON app.proposals TO app_user USING (true) WITH CHECK (true);
CREATE POLICY proposals_app_client ON app.proposals FOR SELECT TO app_client
    USING (client_id = app.current_client_id());

ALTER TABLE app.contracts ENABLE ROW LEVEL SECURITY;
CREATE POLICY contracts_app_user ON app.contracts TO app_user USING (true) WITH CHECK (true);
CREATE POLICY contracts_app_client ON app.contracts FOR SELECT TO app_client
    USING (client_id = app.current_client_id());
