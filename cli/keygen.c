/*
 * keygen.c -- `dcbus keygen NAME [--dir DIR]`: a CURVE key pair.
 *
 * Writes DIR/NAME (the public certificate, to copy into the broker's
 * security.allowed directory, or to give clients as the broker's key) and
 * DIR/NAME_secret (mode 0600, stays with its owner).
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "security.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: dcbus keygen NAME [--dir DIR]\n\n"
                 "Makes a CURVE key pair for the bus: DIR/NAME, the public certificate, and\n"
                 "DIR/NAME_secret, the secret one (mode 0600).  DIR defaults to keys.\n\n"
                 "  For the broker:  dcbus keygen broker     -> security.server_cert: keys/broker\n"
                 "  For workers:     dcbus keygen worker     -> security.client_cert: keys/worker\n"
                 "                   and copy keys/worker into the security.allowed directory.\n");
}

int cli_keygen_main(int argc, char **argv)
{
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *dir = "keys";
    int c;
    while ((c = getopt_long(argc, argv, ":d:h", longopts, NULL)) != -1) {
        if (c == 'd')
            dir = optarg;
        else if (c == 'h')
            return usage(stdout), CLI_EXIT_OK;
        else
            return cli_option_error("keygen", c, argv);
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
