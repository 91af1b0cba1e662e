/*
 * swiss_roll_data.h — the data of the C examples (swiss_roll.c, mpi_train.c): the 2-D swiss
 * roll from a seeded LCG (the same points on every machine and every MPI rank), and the
 * mean nearest-neighbour distance that checks samples against it.
 */
#ifndef SWISS_ROLL_DATA_H
#define SWISS_ROLL_DATA_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ddpm.h"

/* CHECK(call): on a failing status, print the call, the status and ddpm_last_error(), then
 * EXAMPLE_FAIL() (exit(1) unless the including file defines it first). */
#ifndef EXAMPLE_FAIL
#define EXAMPLE_FAIL() exit(1)
#endif
#define CHECK(call)                                                                            \
    do {                                                                                       \
        int status_ = (call);                                                                  \
        if (status_ != DDPM_OK) {                                                              \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,          \
                    ddpm_status_string(status_), ddpm_last_error());                           \
            EXAMPLE_FAIL();                                                                    \
        }                                                                                      \
    } while (0)

/* The swiss roll, scaled to unit-ish spread: θ = 1.5π(1 + 2u), (θ cos θ, θ sin θ)/5 + noise. */
static void swiss_roll(float *xy, int n, unsigned *state) {
    for (int i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        double u = (*state >> 8) / 16777216.0;
        *state = *state * 1664525u + 1013904223u;
        double a = (*state >> 8) / 16777216.0, b;
        *state = *state * 1664525u + 1013904223u;
        b = (*state >> 8) / 16777216.0;
        double g = sqrt(-2 * log(a + 1e-12)) * cos(2 * M_PI * b); /* N(0,1) */
        double theta = 1.5 * M_PI * (1 + 2 * u);
        xy[2 * i] = (float)(theta * cos(theta) / 5 + 0.05 * g);
        xy[2 * i + 1] = (float)(theta * sin(theta) / 5 + 0.05 * g);
    }
}

/* Mean distance from each sample to its nearest data point. */
static double mean_nn_distance(const float *s, int ns, const float *d, int nd) {
    double total = 0;
    for (int i = 0; i < ns; i++) {
        double best = 1e30;
        for (int j = 0; j < nd; j++) {
            double dx = s[2 * i] - d[2 * j], dy = s[2 * i + 1] - d[2 * j + 1];
            double r = dx * dx + dy * dy;
            if (r < best) best = r;
        }
        total += sqrt(best);
    }
    return total / ns;
}

#endif /* SWISS_ROLL_DATA_H */
