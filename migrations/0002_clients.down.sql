DROP TABLE app.clients;
