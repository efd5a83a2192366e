<?php
// Roundcube's configuration: only what vpes-webmail rendered from the
// environment at start (render.php), so that no setting is baked in the image.
$config = [];
require '/run/vpes-webmail/config.inc.php';
