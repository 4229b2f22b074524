/*
 * security.c -- see security.h.
 *
 * The ZAP handler is an actor of its own rather than czmq's zauth, so the
 * key it admitted is handed back as the User-Id (ZMQ puts it on every
 * message of the connection) and keys may come from security.clients as
 * well as from the allowed directory.
 */
#include "security.h"
#include "loader.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* A certificate with its secret key; NULL with a reason if there is none. */
static zcert_t *load_secret(const char *path, const char *what, char *err, size_t errlen)
{
    zcert_t *cert = zcert_load(path);
    static const char zero_key[41] = "0000000000000000000000000000000000000000";
    if (!cert || strcmp(zcert_secret_txt(cert), zero_key) == 0) {
        snprintf(err, errlen, "%s %s: no secret key (%s_secret missing or unreadable)", what, path,
                 path);
        zcert_destroy(&cert);
        return NULL;
    }
    return cert;
}

/* ---------------------------------------------------------------------------
 * The ZAP handler
 */

typedef struct {
    const dcb_config_t *config;
    zcertstore_t *allowed; /* the allowed directory's certificates, or NULL */
} zap_t;

static bool key_allowed(zap_t *z, const char *key)
{
    for (size_t i = 0; i < z->config->nclients; i++)
        if (strcmp(z->config->clients[i].key, key) == 0) return true;
    return z->allowed && zcertstore_lookup(z->allowed, key) != NULL;
}

/* One request: version, request id, domain, address, identity, mechanism,
 * credentials (CURVE: the client's 32-byte public key).  The reply: version,
 * request id, status, text, user id (the key, Z85), metadata (none). */
static void zap_answer(zap_t *z, zsock_t *handler)
{
    zmsg_t *req = zmsg_recv(handler);
    if (!req) return;
    zframe_t *f[7] = {NULL};
    for (int i = 0; i < 7; i++)
        f[i] = zmsg_pop(req);
    char key[41] = "";
    bool ok = f[6] && zframe_streq(f[0], "1.0") && zframe_streq(f[5], "CURVE") &&
              zframe_size(f[6]) == 32 && zmq_z85_encode(key, zframe_data(f[6]), 32) &&
              key_allowed(z, key);
    zmsg_t *reply = zmsg_new();
    zmsg_addstr(reply, "1.0");
    if (f[1])
        zmsg_append(reply, &f[1]);
    else
        zmsg_addstr(reply, "");
    zmsg_addstr(reply, ok ? "200" : "400");
    zmsg_addstr(reply, ok ? "OK" : "key not allowed");
    zmsg_addstr(reply, ok ? key : "");
    zmsg_addmem(reply, "", 0);
    zmsg_send(&reply, handler);
    for (int i = 0; i < 7; i++)
        zframe_destroy(&f[i]);
    zmsg_destroy(&req);
}

static void zap_actor(zsock_t *pipe, void *arg)
{
    zap_t *z = arg;
    zsock_t *handler = zsock_new_rep("@" ZAP_ENDPOINT);
    zsock_signal(pipe, handler ? 0 : 1);
    zpoller_t *poller = handler ? zpoller_new(pipe, handler, NULL) : NULL;
    while (poller) {
        void *which = zpoller_wait(poller, -1);
        if (which == handler) {
            zap_answer(z, handler);
            continue;
        }
        if (which == pipe) {
            char *cmd = zstr_recv(pipe);
            bool term = !cmd || strcmp(cmd, "$TERM") == 0;
            zstr_free(&cmd);
            if (!term) continue;
        } else if (!zpoller_terminated(poller)) {
            continue;
        }
        break;
    }
    zpoller_destroy(&poller);
    zsock_destroy(&handler);
    zcertstore_destroy(&z->allowed);
    free(z);
}

zactor_t *dcb_security_start_auth(const dcb_config_t *config, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!config->curve) return NULL;
    struct stat st;
    if (config->allowed_dir && (stat(config->allowed_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(err, errlen, "security.allowed %s: not a directory", config->allowed_dir);
        return NULL;
    }
    zap_t *z = calloc(1, sizeof *z);
    z->config = config;
    if (config->allowed_dir) z->allowed = zcertstore_new(config->allowed_dir);
    zactor_t *auth = zactor_new(zap_actor, z);
    if (!auth) snprintf(err, errlen, "cannot start the authenticator (%s taken?)", ZAP_ENDPOINT);
    return auth;
}

int dcb_security_server(zsock_t *sock, const dcb_config_t *config, char *err, size_t errlen)
{
    if (!config->curve) return 0;
    zcert_t *cert = load_secret(config->server_cert, "security.server_cert", err, errlen);
    if (!cert) return -1;
    zcert_apply(cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, "dcbus");
    zcert_destroy(&cert);
    return 0;
}

/* The certificate a worker presents: its own under security.keys, if it
 * has one, else the shared client certificate. */
static const char *client_cert_path(const dcb_config_t *config, const char *instance, char *buf,
                                    size_t cap)
{
    struct stat st;
    if (instance && config->keys_dir) {
        snprintf(buf, cap, "%s/%s_secret", config->keys_dir, instance);
        if (stat(buf, &st) == 0) {
            snprintf(buf, cap, "%s/%s", config->keys_dir, instance);
            return buf;
        }
    }
    return config->client_cert;
}

int dcb_security_client(zsock_t *sock, const dcb_config_t *config, const char *instance, char *err,
                        size_t errlen)
{
    if (!config->curve) return 0;
    char path[4096];
    const char *cert_path = client_cert_path(config, instance, path, sizeof path);
    zcert_t *mine = load_secret(
        cert_path, cert_path == path ? "security.keys" : "security.client_cert", err, errlen);
    if (!mine) return -1;
    zcert_t *server = zcert_load(config->server_cert);
    if (!server) {
        snprintf(err, errlen, "security.server_cert %s: cannot read the broker's public key",
                 config->server_cert);
        zcert_destroy(&mine);
        return -1;
    }
    zcert_apply(mine, sock);
    zsock_set_curve_serverkey(sock, zcert_public_txt(server));
    zcert_destroy(&mine);
    zcert_destroy(&server);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Keys bound to instances
 */

const char *dcb_security_peer_key(zmq_msg_t *msg)
{
    const char *key = zmq_msg_gets(msg, "User-Id");
    return key && strlen(key) == 40 ? key : NULL;
}

bool dcb_security_may_register(const dcb_config_t *config, const char *key, const char *instance,
                               dcbus_role_t role, char *why, size_t whylen)
{
    /* Plaintext trusts every local peer; no clients section, every key. */
    if (!config->curve || config->nclients == 0) return true;
    if (!key) return snprintf(why, whylen, "no CURVE key on the connection"), false;
    char as_role[32];
    snprintf(as_role, sizeof as_role, "role:%s", dcb_role_name(role));
    const char *bound = NULL;
    for (size_t i = 0; i < config->nclients; i++) {
        const dcb_client_key_t *c = &config->clients[i];
        if (strcmp(c->key, key) != 0) continue;
        if (strcmp(c->name, instance) == 0 || strcmp(c->name, as_role) == 0) return true;
        bound = c->name;
    }
    if (bound)
        snprintf(why, whylen, "the CURVE key of '%s' may not register as %s '%s'", bound,
                 dcb_role_name(role), instance);
    else
        snprintf(why, whylen, "a CURVE key not in security.clients may not register as %s '%s'",
                 dcb_role_name(role), instance);
    return false;
}

int dcb_security_public_key(const char *path, char key[41])
{
    zcert_t *cert = zcert_load(path);
    if (!cert) return -1;
    snprintf(key, 41, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

int dcb_security_keygen(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[1024];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    zcert_t *cert = zcert_new();
    zcert_set_meta(cert, "name", "%s", name);
    int rc = zcert_save(cert, path);
    zcert_destroy(&cert);
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s and %s_secret", path, path);
        return -1;
    }
    chmod(path, 0644);
    snprintf(path + strlen(path), sizeof path - strlen(path), "_secret");
    chmod(path, 0600);
    return 0;
}
