/*
 * ddpm_version.h — the one place the SwiftDDPM version is written down.
 *
 * ddpm.h includes it for C callers; the Swift engine imports it (Sources/DDPMVersion)
 * for the version it reports and records in checkpoints; the Python package checks the
 * loaded library against the ABI it mirrors (python/swiftddpm/_lib.py, checked by a test).
 * MINOR changes while MAJOR is 0 may break the ABI.
 */
#ifndef DDPM_VERSION_H
#define DDPM_VERSION_H

#define DDPM_VERSION_MAJOR 0
#define DDPM_VERSION_MINOR 3
#define DDPM_VERSION_PATCH 0
#define DDPM_VERSION_NUMBER (DDPM_VERSION_MAJOR * 10000 + DDPM_VERSION_MINOR * 100 + DDPM_VERSION_PATCH)

#endif /* DDPM_VERSION_H */
