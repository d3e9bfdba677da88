-- 0002_clients: the borrowers. CPF (Brazilian taxpayer id) is stored as its 11 digits,
-- address as CEP (8 digits), street, city and UF (state, 2 letters).
CREATE TABLE app.clients (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    cpf         char(11) NOT NULL CONSTRAINT clients_cpf_key UNIQUE
                CONSTRAINT clients_cpf_digits CHECK (cpf ~ '^[0-9]{11}$'),
    email       text CHECK (email IS NULL OR email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    phone       text CHECK (phone IS NULL OR phone ~ '^\+?[0-9]{10,14}$'),
    birth_date  date NOT NULL CHECK (birth_date > date '1900-01-01'),
    cep         char(8) CHECK (cep IS NULL OR cep ~ '^[0-9]{8}$'),
    street      text,
    city        text,
    uf          char(2) CHECK (uf IS NULL OR uf ~ '^[A-Z]{2}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON app.clients TO app_user;
GRANT SELECT ON app.clients TO app_client;

-- RLS is enabled, not forced: the owning (migrating) role keeps full access for migrations
-- and backfills; every other role needs a policy.
ALTER TABLE app.clients ENABLE ROW LEVEL SECURITY;
CREATE POLICY clients_app_user ON app.clients TO app_user USING (true) WITH CHECK (true);
CREATE POLICY clients_app_client ON app.clients FOR SELECT TO app_client
    USING (id = app.current_client_id());
