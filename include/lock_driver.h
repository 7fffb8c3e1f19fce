/*
 * libvirt's lock-driver plugin ABI (libvirt 1.0.0 .. 10.x, x86_64 and others).
 *
 * libvirt does not install src/locking/lock_driver.h; this header describes
 * the same ABI from its documented behaviour, for bindgen. A plugin exports
 * one data symbol, `virLockDriverImpl`, of type `virLockDriver`.
 */
#ifndef HIGHLANDER_LOCK_DRIVER_H
#define HIGHLANDER_LOCK_DRIVER_H

#include <stddef.h>

/* Version libvirt passes to drvInit: major * 1000000 + minor * 1000 + micro. */
#define VIR_LOCK_MANAGER_VERSION 1000000

/* virLockDriver.flags */
enum {
    VIR_LOCK_MANAGER_USES_STATE = (1 << 0),
};

/* drvNew type */
enum {
    VIR_LOCK_MANAGER_OBJECT_TYPE_DOMAIN = 0,
};

/* drvAddResource type */
enum {
    VIR_LOCK_MANAGER_RESOURCE_TYPE_DISK = 0,
    VIR_LOCK_MANAGER_RESOURCE_TYPE_LEASE = 1,
};

/* drvAddResource flags */
enum {
    VIR_LOCK_MANAGER_RESOURCE_READONLY = (1 << 0),
    VIR_LOCK_MANAGER_RESOURCE_SHARED = (1 << 1),
};

/* drvNew flags */
enum {
    VIR_LOCK_MANAGER_NEW_STARTED = (1 << 0),
};

/* drvAcquire flags */
enum {
    VIR_LOCK_MANAGER_ACQUIRE_REGISTER_ONLY = (1 << 0),
    VIR_LOCK_MANAGER_ACQUIRE_RESTRICT = (1 << 1),
};

/* virLockManagerParam.type */
enum {
    VIR_LOCK_MANAGER_PARAM_TYPE_STRING = 0,
    VIR_LOCK_MANAGER_PARAM_TYPE_CSTRING = 1,
    VIR_LOCK_MANAGER_PARAM_TYPE_INT = 2,
    VIR_LOCK_MANAGER_PARAM_TYPE_LONG = 3,
    VIR_LOCK_MANAGER_PARAM_TYPE_UINT = 4,
    VIR_LOCK_MANAGER_PARAM_TYPE_ULONG = 5,
    VIR_LOCK_MANAGER_PARAM_TYPE_DOUBLE = 6,
    VIR_LOCK_MANAGER_PARAM_TYPE_UUID = 7,
};

/* virDomainLockFailureAction (domain_conf.h): <on_lockfailure> */
typedef enum {
    VIR_DOMAIN_LOCK_FAILURE_DEFAULT = 0,
    VIR_DOMAIN_LOCK_FAILURE_POWEROFF = 1,
    VIR_DOMAIN_LOCK_FAILURE_RESTART = 2,
    VIR_DOMAIN_LOCK_FAILURE_PAUSE = 3,
    VIR_DOMAIN_LOCK_FAILURE_IGNORE = 4,
} virDomainLockFailureAction;

/* Error reporting (virerror.h), for virReportErrorHelper. */
enum {
    VIR_FROM_LOCKING = 42,
};
enum {
    VIR_ERR_INTERNAL_ERROR = 1,
    VIR_ERR_INVALID_ARG = 8,
    VIR_ERR_OPERATION_FAILED = 9,
    VIR_ERR_CONFIG_UNSUPPORTED = 67,
    VIR_ERR_OPERATION_TIMEOUT = 68,
    VIR_ERR_RESOURCE_BUSY = 87,
};

typedef struct _virLockManagerParam virLockManagerParam;
struct _virLockManagerParam {
    int type;
    const char *key;
    union {
        int iv;
        long long l;
        unsigned int ui;
        unsigned long long ul;
        double d;
        char *str;
        const char *cstr;
        unsigned char uuid[16];
    } value;
};

typedef struct _virLockDriver virLockDriver;
typedef struct _virLockManager virLockManager;

/* libvirt allocates this and frees it; the plugin owns privateData. */
struct _virLockManager {
    virLockDriver *driver;
    void *privateData;
};

typedef int (*virLockDriverInit)(unsigned int version, const char *configFile, unsigned int flags);
typedef int (*virLockDriverDeinit)(void);
typedef int (*virLockDriverNew)(virLockManager *man, unsigned int type, size_t nparams,
                                virLockManagerParam *params, unsigned int flags);
typedef void (*virLockDriverFree)(virLockManager *man);
typedef int (*virLockDriverAddResource)(virLockManager *man, unsigned int type, const char *name,
                                        size_t nparams, virLockManagerParam *params,
                                        unsigned int flags);
typedef int (*virLockDriverAcquire)(virLockManager *man, const char *state, unsigned int flags,
                                    virDomainLockFailureAction action, int *fd);
typedef int (*virLockDriverRelease)(virLockManager *man, char **state, unsigned int flags);
typedef int (*virLockDriverInquire)(virLockManager *man, char **state, unsigned int flags);

/* Exported by the plugin as `virLockDriverImpl`. Every pointer must be set. */
struct _virLockDriver {
    unsigned int version;
    unsigned int flags;
    virLockDriverInit drvInit;
    virLockDriverDeinit drvDeinit;
    virLockDriverNew drvNew;
    virLockDriverFree drvFree;
    virLockDriverAddResource drvAddResource;
    virLockDriverAcquire drvAcquire;
    virLockDriverRelease drvRelease;
    virLockDriverInquire drvInquire;
};

/* Resolved at run time with dlsym (private, versioned LIBVIRT_PRIVATE_x.y.z). */
typedef void (*virReportErrorHelperFn)(int domcode, int errcode, const char *filename,
                                       const char *funcname, size_t linenr, const char *fmt, ...);

#endif
