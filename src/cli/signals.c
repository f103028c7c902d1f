/* A stop flag for CLI verbs that run until interrupted: SIGINT and SIGTERM are blocked in the
 * calling thread (and so in every thread it starts later) and a small thread sigwait()s them
 * and sets the flag. No signal handler, no global state. */
#include <pthread.h>
#include <signal.h>
#include "cli/cli.h"
#include "switchboard/error.h"

static sigset_t sb_stop_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return set;
}

static void *sb_sigwatch_main(void *arg) {
    sb_sigwatch_t *w = arg;
    sigset_t set = sb_stop_signals();
    int sig = 0;
    sigwait(&set, &sig);
    atomic_store(&w->stop, 1);
    return NULL;
}

int sb_sigwatch_start(sb_sigwatch_t *w) {
    sigset_t set = sb_stop_signals();
    atomic_init(&w->stop, 0);
    w->started = 0;
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&w->thread, NULL, sb_sigwatch_main, w) != 0) return SB_ERR;
    w->started = 1;
    return SB_OK;
}

void sb_sigwatch_stop(sb_sigwatch_t *w) {
    if (!w->started) return;
    pthread_kill(w->thread, SIGTERM); /* wakes sigwait if no signal came yet */
    pthread_join(w->thread, NULL);
    w->started = 0;
}
