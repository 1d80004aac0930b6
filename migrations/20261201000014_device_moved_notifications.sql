-- A push token registered by another account moves there, and the account
-- that held it is told in the app: a new notification kind, device_moved.
-- (Not a preference kind: it cannot be turned off.)
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN
    ('due_soon', 'overdue', 'completed', 'assigned', 'shared', 'warranty_expiring', 'daily_digest',
     'device_moved'));
