DROP TABLE app.contracts;
DROP TABLE app.proposals;
