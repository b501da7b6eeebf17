DROP TABLE file_offset;
DROP TABLE file_journal;
