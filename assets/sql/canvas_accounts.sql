-- accounts.csv: every org, parents before children (Canvas needs a parent to exist first).
-- The parent_account_id column is always present: with account_id it is what makes Canvas read the
-- file as accounts (an empty value = directly under the root account).
SELECT
    account_id,
    parent_account_id,
    name,
    CASE WHEN deleted THEN 'deleted' ELSE 'active' END AS status
FROM rb_account
ORDER BY depth, account_id, parent_account_id, name, status
