/*
 * main.c -- dcbus-broker: command line and signals.
 *
 *     dcbus-broker --config FILE
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <czmq.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "process.h"

static volatile sig_atomic_t s_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dcbus-broker --config FILE [--log-level L]\n"
                 "\n"
                 "Routes msgpack batches between dcbus workers along the pipelines of the\n"
                 "config, and publishes events, errors and tasks as topics.\n"
                 "\n"
                 "  -c, --config FILE    the dcbus YAML config (broker.bus, broker.topics, ...)\n"
                 "  -l, --log-level L    error, warn, info or debug (default info)\n"
                 "  -h, --help           this help\n"
                 "\n"
                 "Exit status: 0 after SIGTERM/SIGINT, 2 on a configuration problem or an\n"
                 "endpoint that cannot be bound.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"log-level", required_argument, NULL, 'l'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *level = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:h", longopts, NULL)) != -1) {
        if (c == 'c')
            config_path = optarg;
        else if (c == 'l')
            level = optarg;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!config_path) {
        fprintf(stderr, "dcbus-broker: --config is required\n\n");
        usage(stderr);
        return 2;
    }
    dcb_log_init("dcbus-broker", NULL);
    if (dcb_clock_error()) {
        dcb_error("refused DCBUS_CLOCK", "error=\"%s\"", dcb_clock_error());
        return 2;
    }
    char err[1024];
    dcb_config_t *config = dcb_config_load(config_path, err, sizeof err);
    if (!config) {
        dcb_error("cannot load the config", "error=\"%s\"", err);
        return 2;
    }
    if (level && dcb_log_level_parse(level) >= 0)
        dcb_log_set_level((dcb_log_level_t)dcb_log_level_parse(level));
    dcb_process_tune_malloc();
    zsys_init();
    zsys_handler_set(NULL);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    dcb_broker_t *broker = dcb_broker_new(config);
    int rc = 2;
    if (broker) rc = dcb_broker_run(broker, &s_stop);
    dcb_broker_destroy(&broker);
    dcb_config_destroy(&config);
    return rc;
}
