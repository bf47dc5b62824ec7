-- Test table of tests/integration/test_rejects_lifecycle.py
SELECT id, email, phone, plan FROM people
