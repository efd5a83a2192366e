<?php
// dbinit.php: vpes-webmail's second step (php-cli, as www-data), after
// render.php. Makes Roundcube's schema when the database has none, and brings
// an older one up to this Roundcube's (what bin/updatedb.sh does), using
// Roundcube's own rcmail_utils and the SQL Debian ships. Two replicas starting
// together take turns: everything runs holding a PostgreSQL advisory lock
// (released with the connection, so a replica killed halfway holds nothing).
// Exit 0: the schema is current; 1: the database is not reachable (yet);
// 2: anything else.
define('INSTALL_PATH', '/var/lib/roundcube/');
require_once INSTALL_PATH . 'program/include/clisetup.php';

// Any number, the same in every replica: "vpes-webmail schema".
const LOCK = 7315003;

$rc = rcube::get_instance();
$db = rcube_db::factory($rc->config->get('db_dsnw'));
$db->db_connect('w');
if (!$db->is_connected()) {
    fwrite(STDERR, "vpes-webmail: the database is not reachable: " . $db->is_error() . "\n");
    exit(1);
}
$db->query('SELECT pg_advisory_lock(?)', LOCK);
if ($db->is_error()) {
    fwrite(STDERR, "vpes-webmail: error: cannot lock the schema: " . $db->is_error() . "\n");
    exit(2);
}
$dir = INSTALL_PATH . 'SQL';
if (!in_array($db->table_name('system'), (array)$db->list_tables())) {
    echo "vpes-webmail: the database has no schema: creating it\n";
    rcmail_utils::db_init($dir);  // exits on failure
}
rcmail_utils::db_update($dir, 'roundcube', null, ['errors' => true]);
$db->query('SELECT pg_advisory_unlock(?)', LOCK);
exit(0);
