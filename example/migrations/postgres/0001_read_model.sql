-- The read model, kept by the ShoppingList projections in each action's own transaction.
-- In the default schema, so the projections' SQL is the same on SQLite.
CREATE TABLE shopping_lists (
    id   BIGINT PRIMARY KEY,
    name TEXT   NOT NULL,
    CONSTRAINT shopping_lists_name_key UNIQUE (name)
);

CREATE TABLE shopping_list_items (
    id               TEXT    PRIMARY KEY,
    shopping_list_id BIGINT  NOT NULL REFERENCES shopping_lists (id),
    name             TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    -- The list's version when the item was added: the items' order.
    added_in_version BIGINT  NOT NULL
);
CREATE INDEX shopping_list_items_list ON shopping_list_items (shopping_list_id, added_in_version);
