/*
 * keygen.c -- `dcbus keygen NAME [--dir DIR]`: a CURVE key pair;
 * `dcbus keygen --config FILE [--dir DIR]`: one per instance of a config.
 *
 * Writes DIR/NAME (the public certificate, to copy into the broker's
 * security.allowed directory, or to give clients as the broker's key) and
 * DIR/NAME_secret (mode 0600, stays with its owner).  With --config it
 * makes the broker's pair, one for command-line clients (cli) and one per
 * worker instance (kept if already there), and prints the security
 * section that binds each key to its instance.
 */
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config.h"
#include "security.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dcbus keygen NAME [--dir DIR]\n"
            "       dcbus keygen --config FILE [--dir DIR]\n\n"
            "Makes a CURVE key pair for the bus: DIR/NAME, the public certificate, and\n"
            "DIR/NAME_secret, the secret one (mode 0600).  DIR defaults to keys.\n\n"
            "  For the broker:  dcbus keygen broker     -> security.server_cert: keys/broker\n"
            "  For workers:     dcbus keygen worker     -> security.client_cert: keys/worker\n"
            "                   and copy keys/worker into the security.allowed directory.\n"
            "  Per instance:    dcbus keygen --config bus.yaml\n"
            "                   -> keys/broker, keys/cli and keys/<instance> for each worker,\n"
            "                   and the security section to paste, each key bound to its\n"
            "                   instance (security.clients).\n");
}

/* The key pair DIR/NAME, made unless it is there; its public key. */
static int ensure_pair(const char *dir, const char *name, char key[41])
{
    char path[4096], err[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s_secret", dir, name);
    if (stat(path, &st) != 0 && dcb_security_keygen(dir, name, err, sizeof err) != 0) {
        fprintf(stderr, "dcbus keygen: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (dcb_security_public_key(path, key) != 0) {
        fprintf(stderr, "dcbus keygen: cannot read %s\n", path);
        return -1;
    }
    return 0;
}

/* `    NAME: "KEY"`, each '$' of the key doubled: the config reads "$$" as a
 * '$' and "${" as a variable. */
static void print_client(const char *name, const char *key)
{
    printf("    %s: \"", name);
    for (const char *p = key; *p; p++)
        fputs(*p == '$' ? "$$" : (char[2]){*p, 0}, stdout);
    printf("\"\n");
}

static int keygen_config(const char *file, const char *dir)
{
    char err[1024], key[41];
    dcb_config_t *cfg = dcb_config_load(file, err, sizeof err);
    if (!cfg) return fprintf(stderr, "dcbus keygen: %s\n", err), CLI_EXIT_FAILURE;
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < cfg->nworkers && rc == CLI_EXIT_OK; i++)
        if (strcmp(cfg->workers[i].name, "broker") == 0 ||
            strcmp(cfg->workers[i].name, "cli") == 0) {
            fprintf(stderr, "dcbus keygen: a worker named '%s' would share the key of the %s\n",
                    cfg->workers[i].name, cfg->workers[i].name);
            rc = CLI_EXIT_FAILURE;
        }
    if (rc == CLI_EXIT_OK && ensure_pair(dir, "broker", key) != 0) rc = CLI_EXIT_FAILURE;
    if (rc == CLI_EXIT_OK && ensure_pair(dir, "cli", key) != 0) rc = CLI_EXIT_FAILURE;
    if (rc == CLI_EXIT_OK) {
        printf("security:\n  curve: true\n  server_cert: %s/broker\n  client_cert: %s/cli\n"
               "  keys: %s\n  clients:\n",
               dir, dir, dir);
        print_client("cli", key);
        for (size_t i = 0; i < cfg->nworkers && rc == CLI_EXIT_OK; i++) {
            if (ensure_pair(dir, cfg->workers[i].name, key) != 0)
                rc = CLI_EXIT_FAILURE;
            else
                print_client(cfg->workers[i].name, key);
        }
    }
    dcb_config_destroy(&cfg);
    return rc;
}

int cli_keygen_main(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *dir = "keys", *config = NULL;
    int c;
    while ((c = getopt_long(argc, argv, ":d:c:h", longopts, NULL)) != -1) {
        if (c == 'd')
            dir = optarg;
        else if (c == 'c')
            config = optarg;
        else if (c == 'h')
            return usage(stdout), CLI_EXIT_OK;
        else
            return cli_option_error("keygen", c, argv);
    }
    if (config) {
        if (optind != argc) return cli_usage_error("keygen", "--config takes no NAME");
        return keygen_config(config, dir);
    }
    if (optind != argc - 1) return cli_usage_error("keygen", "expected one NAME");
    const char *name = argv[optind];
    if (!*name || strchr(name, '/')) return cli_usage_error("keygen", "NAME must be a plain name");
    char err[512];
    if (dcb_security_keygen(dir, name, err, sizeof err) != 0) {
        fprintf(stderr, "dcbus keygen: %s\n", err);
        return CLI_EXIT_FAILURE;
    }
    printf("wrote %s/%s (public) and %s/%s_secret (secret)\n", dir, name, dir, name);
    return CLI_EXIT_OK;
}
