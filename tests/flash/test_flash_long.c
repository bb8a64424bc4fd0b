/* The full power-loss matrix (every 10% of the write): label long. */
#define FLASH_LONG 1
#include "test_flash.c"
