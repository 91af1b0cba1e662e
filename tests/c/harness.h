/*
 * harness.h — runs each test case in a forked child (tests/c/bad_inputs.c,
 * tests/c/checkpoint_mutations.c).
 *
 * A case is an expression evaluated in a child process under alarm(): the child exits 0 if
 * it gives the expected status, 1 otherwise (printing what it got and ddpm_last_error()).
 * The parent counts crashes (the child died of a signal), hangs (SIGALRM) and wrong
 * statuses, and summary() prints one line and gives the exit code: nonzero on any of them.
 */
#ifndef DDPM_TEST_HARNESS_H
#define DDPM_TEST_HARNESS_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddpm.h"

static int cases_run, crashes, hangs, wrong;
static int case_seconds = 30; /* alarm() per case */
static int verbose;

/* In the child: checks status and message, then exits. */
__attribute__((unused)) static void child_check(const char *name, int expected, int got, const char *mentions) {
    const char *msg = ddpm_last_error();
    int ok = got == expected;
    if (ok && expected != DDPM_OK && (msg == NULL || msg[0] == '\0')) ok = 0; /* every failure explains itself */
    if (ok && mentions != NULL && strstr(msg, mentions) == NULL) ok = 0;
    if (!ok || verbose)
        printf("%s %s: got %d (%s), expected %d%s%s; last error: %s\n", ok ? "ok   " : "WRONG", name, got,
               ddpm_status_string(got), expected, mentions ? ", mentioning " : "", mentions ? mentions : "",
               got == DDPM_OK ? "" : msg);
    fflush(stdout);
    _exit(ok ? 0 : 1);
}

/* In the parent: waits for the child and counts the outcome. */
__attribute__((unused)) static void parent_wait(const char *name, pid_t pid) {
    int st = 0;
    cases_run++;
    if (pid < 0) { perror("fork"); wrong++; return; }
    while (waitpid(pid, &st, 0) < 0) {}
    if (WIFSIGNALED(st)) {
        if (WTERMSIG(st) == SIGALRM) { hangs++; printf("HANG  %s: no answer in %d s\n", name, case_seconds); }
        else { crashes++; printf("CRASH %s: signal %d (%s)\n", name, WTERMSIG(st), strsignal(WTERMSIG(st))); }
    } else if (WEXITSTATUS(st) != 0) {
        wrong++;
    }
    fflush(stdout);
}

/* CASE(name, expected status, expression giving a status) */
#define CASE_MSG(name, expected, mentions, ...) do {                                  \
        fflush(stdout);                                                               \
        pid_t pid_ = fork();                                                          \
        if (pid_ == 0) { alarm(case_seconds); child_check((name), (expected), (__VA_ARGS__), (mentions)); } \
        parent_wait((name), pid_);                                                    \
    } while (0)
#define CASE(name, expected, ...) CASE_MSG(name, expected, NULL, __VA_ARGS__)

/* The summary line; returns the process exit code. */
static int summary(const char *program) {
    printf("%s: %d cases, %d crashes, %d hangs, %d wrong statuses\n", program, cases_run, crashes, hangs, wrong);
    return crashes + hangs + wrong == 0 ? 0 : 1;
}

#endif
