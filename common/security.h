/*
 * security.h -- CURVE on the bus, from the config's `security:` section.
 *
 * With security.curve on, both broker endpoints are CURVE servers using the
 * broker's certificate, and a ZAP handler (this module's) lets in only
 * clients whose public key is in security.allowed (a directory of public
 * certificates) or in security.clients; it hands the key on as the
 * connection's User-Id, so the broker knows which key every message came
 * with.  A peer without an allowed key completes no handshake: it can
 * neither send nor receive anything.
 *
 * Keys bound to instances: security.clients names, for each key, what it
 * may be -- a worker instance ("ticker"), any instance of a role
 * ("role:processor"), or anything else ("ops"), a command-line client
 * only.  With a clients section, a HELLO is refused unless the
 * connection's key is the instance's or its role's; without one, every
 * allowed key may register as anything (the old, shared-key setup).
 *
 * Workers present <security.keys>/<instance>_secret when there is one, or
 * else security.client_cert, which `dcbus` clients present.  Certificates
 * are czmq's zcert files, made by `dcbus keygen`: NAME (public) and
 * NAME_secret.
 */
#ifndef DCB_SECURITY_H
#define DCB_SECURITY_H

#include <czmq.h>
#include <stdbool.h>

#include "config.h"
#include "dcbus/plugin.h"

/* Starts the authenticator the broker's sockets rely on; NULL if curve is
 * off.  On failure returns NULL with *err set (non-empty). */
zactor_t *dcb_security_start_auth(const dcb_config_t *config, char *err, size_t errlen);
/* Makes `sock` a CURVE server (before bind).  0, or -1 with a reason. */
int dcb_security_server(zsock_t *sock, const dcb_config_t *config, char *err, size_t errlen);
/* Makes `sock` a CURVE client of the broker (before connect), with the key
 * of worker `instance` (NULL: a command-line client's, client_cert). */
int dcb_security_client(zsock_t *sock, const dcb_config_t *config, const char *instance, char *err,
                        size_t errlen);
/* The CURVE public key (Z85) a received message came with; NULL in
 * plaintext.  Valid while the message is. */
const char *dcb_security_peer_key(zmq_msg_t *msg);
/* Whether the connection with `key` (NULL: plaintext) may register as
 * `instance` in `role`; false with the reason. */
bool dcb_security_may_register(const dcb_config_t *config, const char *key, const char *instance,
                               dcbus_role_t role, char *why, size_t whylen);
/* Writes a new key pair: <dir>/<name> and <dir>/<name>_secret. */
int dcb_security_keygen(const char *dir, const char *name, char *err, size_t errlen);
/* The public key (Z85) of the certificate at `path`, into key[41]. */
int dcb_security_public_key(const char *path, char key[41]);

#endif
