/*
 * security.c -- see security.h.
 */
#include "security.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

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

zactor_t *dcb_security_start_auth(const dcb_config_t *config, char *err, size_t errlen)
{
    err[0] = '\0';
    if (!config->curve) return NULL;
    struct stat st;
    if (stat(config->allowed_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "security.allowed %s: not a directory", config->allowed_dir);
        return NULL;
    }
    zactor_t *auth = zactor_new(zauth, NULL);
    if (!auth) {
        snprintf(err, errlen, "cannot start the authenticator");
        return NULL;
    }
    /* Only the public certificates in that directory get in. */
    zstr_sendx(auth, "CURVE", config->allowed_dir, NULL);
    zsock_wait(auth);
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

int dcb_security_client(zsock_t *sock, const dcb_config_t *config, char *err, size_t errlen)
{
    if (!config->curve) return 0;
    zcert_t *mine = load_secret(config->client_cert, "security.client_cert", err, errlen);
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
