/*
 * AIGES wrapper ABI: the fifteen functions libwrapper.so exports.
 *
 * Every int return is 0 on success, otherwise an error code that
 * wrapperError() turns into text. See README.md for the plugin's own codes.
 */
#ifndef AIGES_WRAPPER_H
#define AIGES_WRAPPER_H

#include "type.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Hands the plugin a loader hook; may be called before wrapperInit. */
int WRAPPER_API wrapperSetCtrl(CtrlType type, void *func);

/** Starts the service layer with the loader's [wrapper] config section. */
int WRAPPER_API wrapperInit(pConfig cfg);

/** Stops the service layer. */
int WRAPPER_API wrapperFini(void);

/** Text for an error code; the pointer stays valid after the call returns. */
const char WRAPPER_API *wrapperError(int errNum);

/** Plugin version string (static lifetime). */
const char WRAPPER_API *wrapperVersion(void);

/** Loads personalisation data under the loader's numeric resId. */
int WRAPPER_API wrapperLoadRes(pDataList perData, unsigned int resId);

/** Unloads personalisation data loaded under resId. */
int WRAPPER_API wrapperUnloadRes(unsigned int resId);

/**
 * Opens a session. cb == NULL: results are pulled with wrapperRead;
 * cb != NULL: results are pushed through cb(usrTag, ...).
 * Returns NULL and sets *errNum on failure.
 */
const void WRAPPER_API *wrapperCreate(const char *usrTag, pParamList params, wrapperCallback cb,
                                      unsigned int psrIds[], int psrCnt, int *errNum);

/** Sends a chunk of session input. */
int WRAPPER_API wrapperWrite(const void *handle, pDataList reqData);

/** Pulls available session output; the plugin owns it until the next read or destroy. */
int WRAPPER_API wrapperRead(const void *handle, pDataList *respData);

/** Closes a session. */
int WRAPPER_API wrapperDestroy(const void *handle);

/** One-shot synchronous request; *respData is owned by the plugin until wrapperExecFree. */
int WRAPPER_API wrapperExec(const char *usrTag, pParamList params, pDataList reqData, pDataList *respData,
                            unsigned int psrIds[], int psrCnt);

/** Releases what wrapperExec returned. Never reads usrTag. */
int WRAPPER_API wrapperExecFree(const char *usrTag, pDataList *respData);

/** One-shot asynchronous request; the result arrives later through callback(usrTag, ...). timeout is in ms, 0 = none. */
int WRAPPER_API wrapperExecAsync(const char *usrTag, pParamList params, pDataList reqData, wrapperCallback callback,
                                 int timeout, unsigned int psrIds[], int psrCnt);

/** Debug text for a session; valid until the session is destroyed. */
const char WRAPPER_API *wrapperDebugInfo(const void *handle);

#ifdef __cplusplus
}
#endif

#endif /* AIGES_WRAPPER_H */
