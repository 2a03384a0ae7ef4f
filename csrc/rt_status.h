/* Status codes shared by every restiming C function. Negative = failure. */
#ifndef RT_STATUS_H
#define RT_STATUS_H

#define RT_OK 0
#define RT_EINVAL (-1)   /* bad argument */
#define RT_ENOMEM (-2)   /* allocation failed */
#define RT_ESYS (-3)     /* a system call failed; errno holds why */
#define RT_ENOENT (-4)   /* shared segment does not exist */
#define RT_EFOREIGN (-5) /* segment exists but is not a restiming ring of this layout */
#define RT_ETOOBIG (-6)  /* record larger than the ring can ever hold */
#define RT_EEXIST (-7)   /* shared segment name already taken */
#define RT_ETRUNC (-8)   /* shared segment was truncated under us */

#endif
