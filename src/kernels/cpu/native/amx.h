/* AMX tile state (amx.c): the permission Linux grants once per process, and one tile
 * configuration that every tile kernel shares (all 8 tiles 16 rows x 64 bytes), loaded once per
 * thread. */
#ifndef QUANTSPEC_AMX_H
#define QUANTSPEC_AMX_H
#ifdef QUANTSPEC_AMX

/* Asks Linux for the tile state (once per process); 0 when the tiles may be used. */
int amx_request(void);
/* Whether this CPU has AMX-TILE, AMX-INT8 and AMX-BF16 (CPUID leaf 7). */
int amx_cpu(void);
void amx_configure_tiles(void);
extern __thread int amx_tiles_configured;

/* Call before the first tile instruction of a kernel. */
static inline void amx_tiles(void) {
  if (!amx_tiles_configured) amx_configure_tiles();
}

#endif
#endif
