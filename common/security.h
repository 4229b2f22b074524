/*
 * security.h -- CURVE on the bus, from the config's `security:` section.
 *
 * With security.curve on, both broker endpoints are CURVE servers using the
 * broker's certificate, and a ZAP handler (czmq's zauth) lets in only
 * clients whose public certificate is in security.allowed; workers and
 * `dcbus` clients present security.client_cert and check the broker's key.
 * A peer without an allowed key completes no handshake: it can neither
 * send nor receive anything.  Certificates are czmq's zcert files, made by
 * `dcbus keygen NAME`: NAME (public) and NAME_secret.
 */
#ifndef DCB_SECURITY_H
#define DCB_SECURITY_H

#include <czmq.h>

#include "config.h"

/* Starts the authenticator the broker's sockets rely on; NULL if curve is
 * off.  On failure returns NULL with *err set (non-empty). */
zactor_t *dcb_security_start_auth(const dcb_config_t *config, char *err, size_t errlen);
/* Makes `sock` a CURVE server (before bind).  0, or -1 with a reason. */
int dcb_security_server(zsock_t *sock, const dcb_config_t *config, char *err, size_t errlen);
/* Makes `sock` a CURVE client of the broker (before connect). */
int dcb_security_client(zsock_t *sock, const dcb_config_t *config, char *err, size_t errlen);
/* Writes a new key pair: <dir>/<name> and <dir>/<name>_secret. */
int dcb_security_keygen(const char *dir, const char *name, char *err, size_t errlen);

#endif
