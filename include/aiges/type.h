/*
 * AIGES wrapper ABI: data types shared by the loader and libwrapper.so.
 *
 * Layouts are x86-64 SysV and must not change: the loader (Go, cgo) builds and
 * reads these structs directly.
 */
#ifndef AIGES_TYPE_H
#define AIGES_TYPE_H

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a function exported by libwrapper.so. */
#define WRAPPER_API __attribute__((visibility("default")))

/** Kind of loader hook handed to wrapperSetCtrl. */
typedef enum {
    CTMeterCustom = 0, /**< func is a wrapperMeterCustom */
    CTMetricsLog = 1,  /**< reserved by the loader */
    CTTraceLog = 2,    /**< func is a wrapperTraceLog */
} CtrlType;

/** Kind of payload carried by a DataList node. */
typedef enum {
    DataText = 0,
    DataAudio = 1,
    DataImage = 2,
    DataVideo = 3,
    DataPer = 4, /**< personalisation data */
} DataType;

/** Position of a node in a stream. */
typedef enum {
    DataBegin = 0,
    DataContinue = 1,
    DataEnd = 2,
    DataOnce = 3, /**< one-shot, no session */
} DataStatus;

/** Key/value list: config, params and desc metadata. Value is NUL-terminated, vlen bytes long. */
typedef struct ParamList {
    char *key;
    char *value;
    unsigned int vlen;
    struct ParamList *next;
} *pParamList, *pConfig, *pDescList;

/** Payload list: request and response data. data is len raw bytes, not NUL-terminated. */
typedef struct DataList {
    char *key;
    void *data;
    unsigned int len;
    DataType type;
    DataStatus status;
    pDescList desc;
    struct DataList *next;
} *pDataList;

/** Result delivery, implemented by the loader. The loader copies respData before returning. */
typedef int (*wrapperCallback)(const void *usrTag, pDataList respData, int ret);

/** Metering hook (CTMeterCustom), implemented by the loader. */
typedef int (*wrapperMeterCustom)(const void *usrTag, const char *meterKey, int count);

/** Trace-log hook (CTTraceLog), implemented by the loader. */
typedef int (*wrapperTraceLog)(const char *usrTag, const char *key, const char *value);

#ifdef __cplusplus
}
#endif

#endif /* AIGES_TYPE_H */
