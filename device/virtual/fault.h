/* The virtual robot's fault specs (see bk_vunit_fault_add in unit.h). */
#ifndef BK_VDEV_FAULT_H
#define BK_VDEV_FAULT_H

#include <stdbool.h>
#include <stdint.h>

enum {
	BK_VFAULT_DISCONNECT_AFTER = 1,
	BK_VFAULT_STALL,
	BK_VFAULT_CORRUPT_FRAME,
	BK_VFAULT_RATE,
	BK_VFAULT_BATTERY,
	BK_VFAULT_BUSY,
	BK_VFAULT_REFUSE_HANDSHAKE,
	BK_VFAULT_POWER_LOSS,
};

#define BK_VFAULT_STEP_MAX 48

typedef struct bk_vfault {
	int kind;
	uint64_t value;                /* bytes, N, rate, percent */
	char step[BK_VFAULT_STEP_MAX]; /* power-loss */
	int percent;                   /* power-loss: -1 when not given */
	bool repeat;                   /* fire in every session */
	bool spent;                    /* a one-shot fault that fired */
	bool armed;                    /* taken by a session in progress */
} bk_vfault;

/* Parses a spec (BK_EUSER "bad-fault" naming what is wrong). */
int bk_vfault_parse(bk_vfault *out, const char *spec);

#endif
