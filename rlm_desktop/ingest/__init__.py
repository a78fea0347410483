"""Turning files (PDF, DOCX, email, text) into documents of a case."""
