DROP TABLE training;
