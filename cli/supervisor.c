/*
 * supervisor.c -- see supervisor.h.
 *
 * One loop, supervisor_poll(): wait for a signal (SIGCHLD, SIGINT, SIGTERM)
 * or the next restart time, reap every exited child and decide its fate,
 * start the restarts that are due.  supervisor_wait() and
 * supervisor_stop_stage() are that loop with different ends.
 *
 * Each worker child (replica >= 0) is started with DCBUS_WORKER_TOKEN =
 * "SECRET.START": a random secret of its own, the same for all its starts,
 * and the number of this start.  The worker sends it in HELLO; a later
 * START under the same secret proves to the broker that the process it
 * still thinks alive has exited (this supervisor saw it), so the restart
 * takes its place at once (docs/protocol.md, "HELLO").
 */
#define _GNU_SOURCE /* sigabbrev_np */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

typedef enum {
    CHILD_IDLE,     /* not started yet */
    CHILD_RUNNING,  /* a process exists */
    CHILD_BACKOFF,  /* failed; restarts at restart_at_ms */
    CHILD_FINISHED, /* one_shot child that exited 0 */
    CHILD_STOPPED,  /* stopped on request */
    CHILD_GAVE_UP   /* failed max_failures times in a row, or refused for good */
} child_state_t;

/* The descriptor a child writes its reason to, and the longest reason read. */
#define REASON_FD  3
#define REASON_MAX 512

typedef struct {
    char *name;
    int replica;
    int stage;
    bool one_shot;
    char **argv;
    pid_t pid;
    child_state_t state;
    bool stop_sent; /* SIGTERM sent: its exit is not a failure */
    bool killed;    /* SIGKILL sent */
    int64_t started_ms, restart_at_ms, backoff_ms;
    int failures; /* in a row */
    unsigned restarts;
    char secret[33];    /* of its start tokens; "" for the broker */
    int refused_status; /* its exit status for "refused for good", 0: none */
    int reason_fd;      /* read end of its REASON_FD pipe, -1: none */
} child_t;

struct supervisor {
    supervisor_opts_t opts;
    child_t *children;
    size_t count, cap;
    sigset_t signals, saved_mask;
    struct sigaction saved_chld;
    int stop_below;                 /* children of this stage and above are not restarted */
    bool force;                     /* kill instead of waiting */
    bool interrupted;               /* SIGINT or SIGTERM received */
    bool gave_up;                   /* a child kept failing */
    bool unclean;                   /* a child was killed or stopped with a failure */
    int refused_status;             /* for children added from now on */
    char refusal[REASON_MAX + 256]; /* the child refused for good, and why */
};

extern char **environ;

/* 32 hex digits from /dev/urandom (the clock and pid if it cannot be read). */
static void random_secret(char out[33])
{
    uint8_t raw[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t mix = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        memcpy(raw, &mix, sizeof mix);
    }
    if (fd >= 0) close(fd);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

/* The environment of a child's start: ours, with its start token.  NULL
 * for the broker (it gets ours as it is). */
static char **child_env(const child_t *c)
{
    if (!c->secret[0]) return NULL;
    static const char var[] = "DCBUS_WORKER_TOKEN=";
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env) abort();
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], var, sizeof var - 1) != 0) env[j++] = environ[i];
    char *token = malloc(sizeof var + 48);
    if (!token) abort();
    snprintf(token, sizeof var + 48, "%s%s.%u", var, c->secret, c->restarts);
    env[j] = token;
    return env;
}

static void free_env(char **env)
{
    if (!env) return;
    size_t i = 0;
    while (env[i + 1])
        i++;
    free(env[i]); /* the token, last */
    free(env);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* SIGCHLD is blocked and taken by sigtimedwait; a handler (never run)
 * keeps the kernel from discarding it as ignored by default. */
static void on_sigchld(int sig)
{
    (void)sig;
}

supervisor_t *supervisor_new(const supervisor_opts_t *opts)
{
    supervisor_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->opts = *opts;
    self->stop_below = INT_MAX;
    sigemptyset(&self->signals);
    sigaddset(&self->signals, SIGCHLD);
    sigaddset(&self->signals, SIGINT);
    sigaddset(&self->signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &self->signals, &self->saved_mask);
    struct sigaction sa = {.sa_handler = on_sigchld, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, &self->saved_chld);
    setenv("DCBUS_REASON_FD", "3", 1); /* REASON_FD, for every child */
    return self;
}

static void free_argv(char **argv)
{
    for (char **a = argv; a && *a; a++)
        free(*a);
    free(argv);
}

void supervisor_destroy(supervisor_t **self_p)
{
    supervisor_t *self = *self_p;
    if (!self) return;
    for (size_t i = 0; i < self->count; i++) {
        child_t *c = &self->children[i];
        if (c->state == CHILD_RUNNING) { /* only on an early error path */
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
        }
        if (c->reason_fd >= 0) close(c->reason_fd);
        free(c->name);
        free_argv(c->argv);
    }
    free(self->children);
    sigaction(SIGCHLD, &self->saved_chld, NULL);
    sigprocmask(SIG_SETMASK, &self->saved_mask, NULL);
    free(self);
    *self_p = NULL;
}

void supervisor_add(supervisor_t *self, const char *name, int replica, int stage, bool one_shot,
                    char *const argv[])
{
    if (self->count == self->cap) {
        self->cap = self->cap ? 2 * self->cap : 8;
        self->children = realloc(self->children, self->cap * sizeof *self->children);
        if (!self->children) abort();
    }
    size_t argc = 0;
    while (argv[argc])
        argc++;
    char **copy = calloc(argc + 1, sizeof *copy);
    if (!copy) abort();
    for (size_t i = 0; i < argc; i++)
        copy[i] = strdup(argv[i]);
    self->children[self->count++] = (child_t){.name = strdup(name),
                                              .replica = replica,
                                              .stage = stage,
                                              .one_shot = one_shot,
                                              .argv = copy,
                                              .state = CHILD_IDLE,
                                              .backoff_ms = self->opts.backoff_min_ms,
                                              .refused_status = self->refused_status,
                                              .reason_fd = -1};
    if (replica >= 0) random_secret(self->children[self->count - 1].secret);
}

void supervisor_refuse_on(supervisor_t *self, int status)
{
    self->refused_status = status;
}

const char *supervisor_refusal(const supervisor_t *self)
{
    return self->refusal[0] ? self->refusal : NULL;
}

/* "instance=csv replica=0", the child's part of every log line. */
static const char *who(const child_t *c)
{
    static char buf[256];
    if (c->replica >= 0)
        snprintf(buf, sizeof buf, "instance=%s replica=%d", c->name, c->replica);
    else
        snprintf(buf, sizeof buf, "instance=%s", c->name);
    return buf;
}

/* "exit=1" or "signal=KILL". */
static const char *describe_status(int status)
{
    static char buf[64];
    if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        if (abbrev)
            snprintf(buf, sizeof buf, "signal=%s", abbrev);
        else
            snprintf(buf, sizeof buf, "signal=%d", WTERMSIG(status));
    } else {
        snprintf(buf, sizeof buf, "exit=%d", WEXITSTATUS(status));
    }
    return buf;
}

/* In the child, between fork and exec: async-signal-safe calls only.
 * `reason` is the write end of its reason pipe, or -1. */
static void exec_child(const supervisor_t *self, const child_t *c, char **env, pid_t parent,
                       int reason)
{
    if (reason == REASON_FD)
        fcntl(REASON_FD, F_SETFD, 0); /* keep it across exec */
    else if (reason >= 0)
        dup2(reason, REASON_FD); /* the copy is not close-on-exec */
    sigaction(SIGCHLD, &self->saved_chld, NULL);
    sigprocmask(SIG_SETMASK, &self->saved_mask, NULL);
    setpgid(0, 0);                    /* Ctrl-C at a terminal reaches the supervisor only */
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* ...and a dead supervisor leaves no orphans */
    if (getppid() != parent) _exit(1);
    if (env)
        execve(c->argv[0], c->argv, env);
    else
        execv(c->argv[0], c->argv);
    static const char msg[] = "dcbus run: cannot execute ";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    ignored = write(STDERR_FILENO, c->argv[0], strlen(c->argv[0]));
    ignored = write(STDERR_FILENO, "\n", 1);
    (void)ignored;
    _exit(127);
}

static void child_failed(supervisor_t *self, child_t *c, const char *how);

/* A pipe for the child's reason: its read end kept in c->reason_fd, its
 * write end returned (-1 if there is none; the child then says nothing). */
static int reason_pipe(child_t *c)
{
    int fds[2];
    if (c->reason_fd >= 0) close(c->reason_fd);
    c->reason_fd = -1;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    c->reason_fd = fds[0];
    return fds[1];
}

/* What the child wrote to its reason pipe, without its newline ("" if
 * nothing); the pipe is closed. */
static const char *read_reason(child_t *c)
{
    static char buf[REASON_MAX];
    ssize_t n = c->reason_fd >= 0 ? read(c->reason_fd, buf, sizeof buf - 1) : -1;
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (c->reason_fd >= 0) close(c->reason_fd);
    c->reason_fd = -1;
    return buf;
}

static void spawn(supervisor_t *self, child_t *c)
{
    pid_t parent = getpid();
    char **env = child_env(c); /* made before fork: the child may only exec */
    int reason = reason_pipe(c);
    pid_t pid = fork();
    if (pid == 0) exec_child(self, c, env, parent, reason);
    free_env(env);
    if (reason >= 0) close(reason);
    c->started_ms = now_ms();
    c->stop_sent = c->killed = false;
    if (pid < 0) {
        child_failed(self, c, strerror(errno));
        return;
    }
    setpgid(pid, pid);
    c->pid = pid;
    c->state = CHILD_RUNNING;
    if (c->restarts)
        dcb_info("child restarted", "%s pid=%d restarts=%u", who(c), (int)pid, c->restarts);
    else
        dcb_info("child started", "%s pid=%d", who(c), (int)pid);
}

/* A failure: schedule a restart after the back-off, or give up. */
static void child_failed(supervisor_t *self, child_t *c, const char *how)
{
    int64_t now = now_ms();
    if (now - c->started_ms >= self->opts.stable_ms) {
        c->failures = 0;
        c->backoff_ms = self->opts.backoff_min_ms;
    }
    c->failures++;
    if (c->stage >= self->stop_below) {
        c->state = CHILD_STOPPED;
        dcb_warn("child failed while stopping", "%s %s", who(c), how);
        self->unclean = true;
        return;
    }
    if (self->opts.max_failures > 0 && c->failures >= self->opts.max_failures) {
        c->state = CHILD_GAVE_UP;
        self->gave_up = true;
        dcb_error("child keeps failing; giving up", "%s %s failures=%d", who(c), how, c->failures);
        return;
    }
    c->state = CHILD_BACKOFF;
    c->restart_at_ms = now + c->backoff_ms;
    dcb_warn("child failed; restarting", "%s %s in_ms=%lld failures=%d", who(c), how,
             (long long)c->backoff_ms, c->failures);
    c->backoff_ms *= 2;
    if (c->backoff_ms > self->opts.backoff_max_ms) c->backoff_ms = self->opts.backoff_max_ms;
}

/* Refused for good: not restarted, and the supervisor ends. */
static void child_refused(supervisor_t *self, child_t *c, int status, const char *why)
{
    c->state = CHILD_GAVE_UP;
    self->gave_up = true;
    if (snprintf(self->refusal, sizeof self->refusal, "%s %s: %s", who(c), describe_status(status),
                 why[0] ? why : "refused for a reason a restart cannot fix (see its log)") < 0)
        snprintf(self->refusal, sizeof self->refusal, "%s", who(c)); /* (a long one is cut) */
    dcb_error("child refused for good; not restarted", "%s %s reason=\"%s\"", who(c),
              describe_status(status), why);
}

static void child_exited(supervisor_t *self, child_t *c, int status)
{
    c->pid = 0;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const char *why = read_reason(c);
    if (!c->stop_sent && c->refused_status && WIFEXITED(status) &&
        WEXITSTATUS(status) == c->refused_status) {
        child_refused(self, c, status, why);
    } else if (c->stop_sent) {
        c->state = CHILD_STOPPED;
        if (clean) {
            dcb_info("child stopped", "%s", who(c));
        } else {
            self->unclean = true;
            dcb_warn("child stopped with a failure", "%s %s", who(c), describe_status(status));
        }
    } else if (c->one_shot && clean) {
        c->state = CHILD_FINISHED;
        dcb_info("child finished", "%s", who(c));
    } else {
        child_failed(self, c, clean ? "exit=0 unexpected=yes" : describe_status(status));
    }
}

static child_t *child_by_pid(supervisor_t *self, pid_t pid)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->children[i].state == CHILD_RUNNING && self->children[i].pid == pid)
            return &self->children[i];
    return NULL;
}

static void reap(supervisor_t *self)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        child_t *c = child_by_pid(self, pid);
        if (c) child_exited(self, c, status);
    }
}

static void restart_due(supervisor_t *self)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < self->count; i++) {
        child_t *c = &self->children[i];
        if (c->state != CHILD_BACKOFF || c->restart_at_ms > now) continue;
        if (c->stage >= self->stop_below) {
            c->state = CHILD_STOPPED;
            continue;
        }
        c->restarts++;
        spawn(self, c);
    }
}

/* The first SIGINT/SIGTERM asks for a stop; the second forces it. */
static void on_stop_signal(supervisor_t *self, int sig)
{
    if (!self->interrupted) {
        self->interrupted = true;
        dcb_info("stop requested", "signal=%s", sigabbrev_np(sig));
    } else if (!self->force) {
        self->force = true;
        dcb_warn("stop forced: children still running are killed", "signal=%s", sigabbrev_np(sig));
    }
}

/* Waits for a signal, at most `wait_ms` and never past a due restart. */
static void supervisor_poll(supervisor_t *self, int64_t wait_ms)
{
    int64_t now = now_ms();
    if (wait_ms > 1000) wait_ms = 1000; /* a lost SIGCHLD costs a second at most */
    for (size_t i = 0; i < self->count; i++)
        if (self->children[i].state == CHILD_BACKOFF &&
            self->children[i].restart_at_ms - now < wait_ms)
            wait_ms = self->children[i].restart_at_ms - now;
    if (wait_ms < 0) wait_ms = 0;
    struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000};
    int sig;
    while ((sig = sigtimedwait(&self->signals, NULL, &ts)) > 0) {
        if (sig != SIGCHLD) on_stop_signal(self, sig);
        ts = (struct timespec){0, 0}; /* drain what else is pending, then go on */
    }
    reap(self);
    restart_due(self);
}

void supervisor_start(supervisor_t *self)
{
    int top = -1;
    for (size_t i = 0; i < self->count; i++)
        if (self->children[i].stage > top) top = self->children[i].stage;
    for (int stage = 0; stage <= top; stage++)
        for (size_t i = 0; i < self->count; i++)
            if (self->children[i].stage == stage && self->children[i].state == CHILD_IDLE)
                spawn(self, &self->children[i]);
}

bool supervisor_one_shots_finished(const supervisor_t *self)
{
    bool any = false;
    for (size_t i = 0; i < self->count; i++) {
        if (!self->children[i].one_shot) continue;
        if (self->children[i].state != CHILD_FINISHED) return false;
        any = true;
    }
    return any;
}

/* How a wait ends early, or -1 if it goes on. */
static int wait_ended(const supervisor_t *self)
{
    if (self->interrupted) return SUPERVISOR_SIGNALLED;
    if (self->refusal[0]) return SUPERVISOR_REFUSED;
    if (self->gave_up) return SUPERVISOR_GAVE_UP;
    return -1;
}

supervisor_end_t supervisor_wait(supervisor_t *self)
{
    for (;;) {
        if (wait_ended(self) >= 0) return (supervisor_end_t)wait_ended(self);
        if (supervisor_one_shots_finished(self)) return SUPERVISOR_DONE;
        supervisor_poll(self, 1000);
    }
}

supervisor_end_t supervisor_wait_for(supervisor_t *self, bool (*done)(void *arg), void *arg,
                                     int every_ms)
{
    for (;;) {
        if (wait_ended(self) >= 0) return (supervisor_end_t)wait_ended(self);
        if (done(arg)) return SUPERVISOR_DONE;
        supervisor_poll(self, every_ms);
    }
}

bool supervisor_await(supervisor_t *self, bool (*done)(void *arg), void *arg, int every_ms,
                      int64_t timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (done(arg)) return true;
        if (self->force || now_ms() >= deadline) return false;
        supervisor_poll(self, every_ms);
    }
}

static bool stage_running(const supervisor_t *self, int stage)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->children[i].stage == stage && self->children[i].state == CHILD_RUNNING)
            return true;
    return false;
}

static void kill_stage(supervisor_t *self, int stage)
{
    for (size_t i = 0; i < self->count; i++) {
        child_t *c = &self->children[i];
        if (c->stage != stage || c->state != CHILD_RUNNING || c->killed) continue;
        if (self->force)
            dcb_warn("killing child", "%s pid=%d", who(c), (int)c->pid);
        else
            dcb_error("child did not stop in time; killing it", "%s pid=%d timeout_ms=%lld", who(c),
                      (int)c->pid, (long long)self->opts.stop_timeout_ms);
        kill(c->pid, SIGKILL);
        c->killed = true;
        self->unclean = true;
    }
}

void supervisor_stop_stage(supervisor_t *self, int stage)
{
    if (stage < self->stop_below) self->stop_below = stage;
    for (size_t i = 0; i < self->count; i++) {
        child_t *c = &self->children[i];
        if (c->stage != stage) continue;
        if (c->state == CHILD_RUNNING) {
            dcb_info("stopping child", "%s pid=%d", who(c), (int)c->pid);
            kill(c->pid, self->force ? SIGKILL : SIGTERM);
            c->stop_sent = true;
            c->killed = self->force;
        } else if (c->state == CHILD_BACKOFF || c->state == CHILD_IDLE) {
            c->state = CHILD_STOPPED;
        }
    }
    int64_t deadline = now_ms() + self->opts.stop_timeout_ms;
    while (stage_running(self, stage)) {
        int64_t left = deadline - now_ms();
        if (self->force || left <= 0) kill_stage(self, stage);
        supervisor_poll(self, left > 100 ? left : 100); /* SIGCHLD ends the wait early */
    }
}

bool supervisor_failed(const supervisor_t *self)
{
    return self->gave_up || self->unclean;
}
