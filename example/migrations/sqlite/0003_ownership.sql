-- Who owns each list, and with whom it is shared: what `shoppingLists` filters on. Lists made
-- before ownership belong to `anonymous`, as their events say.
ALTER TABLE shopping_lists ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';
CREATE INDEX shopping_lists_owner ON shopping_lists (owner, id);

CREATE TABLE shopping_list_shares (
    shopping_list_id INTEGER NOT NULL REFERENCES shopping_lists (id),
    user_id          TEXT   NOT NULL,
    PRIMARY KEY (user_id, shopping_list_id)
);
