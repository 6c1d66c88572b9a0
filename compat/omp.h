/* Stands in for <omp.h> in a build without OpenMP (make OPENMP=0, e.g. on a Mac without
 * Homebrew's libomp): the program runs on one thread, and the few OpenMP calls it makes
 * do nothing. */
#ifndef XP_COMPAT_OMP_H
#define XP_COMPAT_OMP_H
static inline void omp_set_num_threads(int n) { (void)n; }
#endif
