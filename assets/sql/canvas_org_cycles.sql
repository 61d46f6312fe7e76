-- Orgs on a parentSourcedId loop: Canvas cannot create them in any order.
SELECT org_id, parent_org_id FROM rb_org_cycle ORDER BY ALL
