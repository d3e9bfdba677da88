DROP TABLE app.payments;
DROP TABLE app.installments;
